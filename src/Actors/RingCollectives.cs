using ActorRing.Transport;

namespace ActorRing.Actors;

/// <summary>
/// The communicator the <see cref="RingPeer"/> hands to the ShardWorker once, for the life of the process.
/// Underneath, the peer swaps the real ring connection whenever the ring is re-formed, so a loaded model keeps
/// its reference and its weights across ring failures. Between rings every call fails fast with a
/// <see cref="CollectiveException"/> instead of touching a closed socket.
/// </summary>
public sealed class RingCollectives : ICollectives
{
    private volatile ICollectives? _current;

    public RingCollectives(int rank, int worldSize)
    {
        Rank = rank;
        WorldSize = worldSize;
    }

    public int Rank { get; }
    public int WorldSize { get; }
    public bool IsConnected => _current is not null;

    internal void Attach(ICollectives connection)
    {
        if (connection.Rank != Rank || connection.WorldSize != WorldSize)
            throw new InvalidOperationException(
                $"ring connection is rank {connection.Rank}/{connection.WorldSize}, expected {Rank}/{WorldSize}");
        _current = connection;
    }

    /// <summary>Detaches and returns the live connection so the caller can dispose it (which closes its sockets
    /// and makes a collective blocked on another thread fail at once).</summary>
    internal ICollectives? Detach() => Interlocked.Exchange(ref _current, null);

    private ICollectives Current => _current
        ?? throw new CollectiveException($"rank {Rank}: the ring is not connected (closed after an error or not formed yet)");

    // A collective that races with Detach sees a disposed connection; each call reports that as the ring
    // failure it is.
    public void AllReduceSum(Span<float> data)
    {
        var c = Current;
        try { c.AllReduceSum(data); }
        catch (ObjectDisposedException e) { throw Closed(e); }
    }

    public void AllReduceSum(Span<Half> data)
    {
        var c = Current;
        try { c.AllReduceSum(data); }
        catch (ObjectDisposedException e) { throw Closed(e); }
    }

    public void AllReduceSum(Span<BFloat16> data)
    {
        var c = Current;
        try { c.AllReduceSum(data); }
        catch (ObjectDisposedException e) { throw Closed(e); }
    }

    public unsafe void AllReduceSum(void* data, long count, DType dtype)
    {
        var c = Current;
        try { c.AllReduceSum(data, count, dtype); }
        catch (ObjectDisposedException e) { throw Closed(e); }
    }

    public void AllGather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts) where T : unmanaged
    {
        var c = Current;
        try { c.AllGather(local, output, counts); }
        catch (ObjectDisposedException e) { throw Closed(e); }
    }

    public void Gather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts, int root) where T : unmanaged
    {
        var c = Current;
        try { c.Gather(local, output, counts, root); }
        catch (ObjectDisposedException e) { throw Closed(e); }
    }

    public void Broadcast<T>(Span<T> data, int root) where T : unmanaged
    {
        var c = Current;
        try { c.Broadcast(data, root); }
        catch (ObjectDisposedException e) { throw Closed(e); }
    }

    public void Barrier()
    {
        var c = Current;
        try { c.Barrier(); }
        catch (ObjectDisposedException e) { throw Closed(e); }
    }

    private CollectiveException Closed(ObjectDisposedException e) =>
        new($"rank {Rank}: the ring was closed during a collective", e);

    /// <summary>Closes the live connection, if any.</summary>
    public void Dispose() => Detach()?.Dispose();
}
