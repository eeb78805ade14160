namespace ActorRing.Transport;

/// <summary>
/// The collective operations one rank can run with its peers. Every rank calls the same operations in the
/// same order; each call blocks the calling thread until it completes on this rank, or throws a
/// <see cref="CollectiveException"/> within the operation deadline. It is not thread-safe: one compute
/// thread per rank drives it.
/// </summary>
public interface ICollectives : IDisposable
{
    int Rank { get; }
    int WorldSize { get; }

    /// <summary>In-place sum across ranks. Every rank ends with bit-identical values.</summary>
    void AllReduceSum(Span<float> data);

    /// <summary>In-place sum across ranks, accumulated in float32 and rounded once.</summary>
    void AllReduceSum(Span<Half> data);

    /// <summary>In-place sum across ranks, accumulated in float32 and rounded once.</summary>
    void AllReduceSum(Span<BFloat16> data);

    /// <summary>In-place sum over caller-owned native memory (e.g. a TorchSharp tensor's storage).</summary>
    unsafe void AllReduceSum(void* data, long count, DType dtype);

    /// <summary>
    /// Every rank contributes <paramref name="local"/> (exactly <c>counts[Rank]</c> elements); every rank's
    /// <paramref name="output"/> receives all contributions concatenated in rank order. Counts may differ
    /// per rank (uneven splits).
    /// </summary>
    void AllGather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts) where T : unmanaged;

    /// <summary>
    /// Like <see cref="AllGather{T}"/>, but only <paramref name="root"/> receives the concatenation; other
    /// ranks never hold it and may pass an empty <paramref name="output"/>.
    /// </summary>
    void Gather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts, int root) where T : unmanaged;

    /// <summary>Copies <paramref name="data"/> from <paramref name="root"/> to every rank, in place.</summary>
    void Broadcast<T>(Span<T> data, int root) where T : unmanaged;

    /// <summary>Returns once every rank has entered the barrier.</summary>
    void Barrier();
}
