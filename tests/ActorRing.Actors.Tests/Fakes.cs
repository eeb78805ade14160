using ActorRing.Actors.Engine;
using ActorRing.Transport;

namespace ActorRing.Actors.Tests;

/// <summary>A communicator that records use, can be told to fail, and notices disposal (closed sockets).</summary>
public sealed class FakeCollectives(int rank, int worldSize) : ICollectives
{
    public int Rank { get; } = rank;
    public int WorldSize { get; } = worldSize;
    public volatile bool Disposed;
    public volatile string? FailWith;
    public int AllReduceCalls;

    private void Check()
    {
        ObjectDisposedException.ThrowIf(Disposed, this);
        if (FailWith is { } reason) throw new CollectiveException(reason);
    }

    public void AllReduceSum(Span<float> data) { Check(); Interlocked.Increment(ref AllReduceCalls); }
    public void AllReduceSum(Span<Half> data) => Check();
    public void AllReduceSum(Span<BFloat16> data) => Check();
    public unsafe void AllReduceSum(void* data, long count, DType dtype) => Check();
    public void AllGather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts) where T : unmanaged => Check();
    public void Gather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts, int root) where T : unmanaged => Check();
    public void Broadcast<T>(Span<T> data, int root) where T : unmanaged => Check();
    public void Barrier() => Check();
    public void Dispose() => Disposed = true;
}

/// <summary>Hands out a new <see cref="FakeCollectives"/> per connect, or fails like the transport would.</summary>
public sealed class FakeRingConnector(int rank, int worldSize) : IRingConnector
{
    public int Rank { get; } = rank;
    public int WorldSize { get; } = worldSize;
    public List<FakeCollectives> Made { get; } = new();
    public string? FailWith { get; set; }
    public TaskCompletionSource? Gate { get; set; }

    /// <summary>How many of the next connects fail (as a transient bootstrap error would).</summary>
    public int FailTimes;

    public async Task<ICollectives> ConnectAsync(CancellationToken cancellationToken)
    {
        if (Gate is { } gate) await gate.Task.WaitAsync(cancellationToken);
        if (FailWith is { } reason) throw new CollectiveException(reason);
        if (Interlocked.Decrement(ref FailTimes) >= 0) throw new CollectiveException($"rank {Rank}: handshake with the right neighbour failed (injected)");
        var c = new FakeCollectives(Rank, WorldSize);
        lock (Made) Made.Add(c);
        return c;
    }

    public FakeCollectives Last { get { lock (Made) return Made[^1]; } }
}

/// <summary>
/// A deterministic "model": the logits put all weight on (last token + 1) mod <see cref="Vocab"/>, so the
/// greedy continuation of any prompt is known. Each forward does one all-reduce, like a real layer, so ring
/// failures surface here; a gate lets a test hold a forward pass in progress.
/// </summary>
public sealed class FakeEngine(ICollectives comm) : IShardEngine
{
    public const int Vocab = 16;
    public List<(int Slot, int[] Tokens, int Start, string? Thread)> Calls { get; } = new();
    public List<int> Resets { get; } = new();
    public ManualResetEventSlim? Gate { get; set; }
    public bool Disposed { get; private set; }

    public float[]? Forward(int slot, ReadOnlySpan<int> tokens, int startPosition)
    {
        lock (Calls) Calls.Add((slot, tokens.ToArray(), startPosition, Thread.CurrentThread.Name));
        if (Gate is { } g && !g.Wait(TimeSpan.FromSeconds(10))) throw new TimeoutException("test gate never opened");
        comm.AllReduceSum(new float[4]);
        if (comm.Rank != 0) return null;
        var logits = new float[Vocab];
        logits[(tokens[^1] + 1) % Vocab] = 1;
        return logits;
    }

    public void ResetSlot(int slot) { lock (Calls) Resets.Add(slot); }
    public void Dispose() => Disposed = true;
}

public sealed class FakeEngineFactory(string fingerprint = "fp-test") : IShardEngineFactory
{
    public string ModelFingerprint { get; } = fingerprint;
    public FakeEngine? Engine { get; private set; }
    public string? FailWith { get; set; }
    public ManualResetEventSlim? StepGate { get; set; }
    public string? LoadThread { get; private set; }

    public IShardEngine Load(ICollectives comm, IProgress<double> progress, CancellationToken cancellationToken)
    {
        LoadThread = Thread.CurrentThread.Name;
        for (int i = 1; i <= 4; i++) progress.Report(i / 4.0);
        if (FailWith is { } reason) throw new InvalidDataException(reason);
        Engine = new FakeEngine(comm) { Gate = StepGate };
        return Engine;
    }
}

/// <summary>Greedy argmax, the sampler a temperature-0 request uses.</summary>
public sealed class GreedyPickers : ITokenPickerFactory
{
    public ITokenPicker Create(SamplingSpec sampling)
    {
        if (sampling.Temperature < 0) throw new ArgumentException($"temperature must be >= 0, got {sampling.Temperature}");
        return new Greedy();
    }

    private sealed class Greedy : ITokenPicker
    {
        public int Pick(float[] logits, IReadOnlyList<int> history)
        {
            int best = 0;
            for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
            return best;
        }
    }
}
