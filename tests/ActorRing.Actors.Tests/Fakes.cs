using System.Collections.Concurrent;
using ActorRing.Actors.Engine;
using ActorRing.Actors.Serving;
using ActorRing.Model.Batching;
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
    /// <summary>As if every rank contributed what this one does.</summary>
    public void AllGather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts) where T : unmanaged
    {
        Check();
        for (int at = 0; at + local.Length <= output.Length; at += local.Length) local.CopyTo(output[at..]);
    }
    public void Gather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts, int root) where T : unmanaged => Check();
    /// <summary>What a non-root rank receives from its broadcasts, in order (see <see cref="SendPlan"/>); it
    /// waits up to 10 s for each, as a ring deadline would.</summary>
    public BlockingCollection<int[]> Incoming { get; } = new();

    public FakeRingHub? Hub { get; set; }

    public void Broadcast<T>(Span<T> data, int root) where T : unmanaged
    {
        Check();
        if (typeof(T) != typeof(int)) return;
        if (Rank == root)
        {
            // Linked fakes (a FakeRingHub) deliver rank 0's plans to the other ranks' receives.
            Hub?.Deliver(this, System.Runtime.InteropServices.MemoryMarshal.Cast<T, int>(data).ToArray());
            return;
        }
        if (!Incoming.TryTake(out var next, TimeSpan.FromSeconds(10)))
            throw new CollectiveException($"broadcast: left neighbour timed out (fake)");
        Check();
        next.AsSpan().CopyTo(System.Runtime.InteropServices.MemoryMarshal.Cast<T, int>(data));
    }

    /// <summary>Queues <paramref name="plan"/> as rank 0's <see cref="PlanChannel"/> would broadcast it.</summary>
    public void SendPlan(StepPlan plan)
    {
        var data = StepPlanCodec.Encode(plan);
        var frame = new int[PlanChannel.FrameInts];
        frame[0] = data.Length;
        Array.Copy(data, 0, frame, 1, Math.Min(data.Length, frame.Length - 1));
        Incoming.Add(frame);
        if (data.Length > frame.Length - 1) Incoming.Add(data[(frame.Length - 1)..]);
    }

    public void Barrier() => Check();
    public void Dispose() => Disposed = true;
}

/// <summary>Links the fakes of one test's ranks: what rank 0 broadcasts reaches the newest fake of every other rank.</summary>
public sealed class FakeRingHub
{
    private readonly Dictionary<int, FakeCollectives> _members = new();

    public void Join(FakeCollectives member)
    {
        lock (_members) _members[member.Rank] = member;
        member.Hub = this;
    }

    public void Deliver(FakeCollectives from, int[] data)
    {
        lock (_members)
            foreach (var m in _members.Values)
                if (m != from && !m.Disposed) m.Incoming.Add(data);
    }
}

/// <summary>Hands out a new <see cref="FakeCollectives"/> per connect, or fails like the transport would.</summary>
public sealed class FakeRingConnector(int rank, int worldSize, FakeRingHub? hub = null) : IRingConnector
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
        hub?.Join(c);
        lock (Made) Made.Add(c);
        return c;
    }

    public FakeCollectives Last { get { lock (Made) return Made[^1]; } }
}

/// <summary>
/// A deterministic "model": the logits of a sequence put all weight on (its last token + 1) mod
/// <see cref="Vocab"/>, so the greedy continuation of any prompt is known. Each step does one all-reduce, like a
/// real layer, so ring failures surface here; a gate lets a test hold a step in progress.
/// </summary>
public sealed class FakeEngine(ICollectives comm) : IShardEngine
{
    public const int Vocab = 16;
    public List<(StepPlan Plan, string? Thread)> Calls { get; } = new();
    public ManualResetEventSlim? Gate { get; set; }

    /// <summary>When set, each step waits for one permit: a test paces the loop step by step.</summary>
    public SemaphoreSlim? Steps { get; set; }
    public bool Disposed { get; private set; }
    public int KvBlocks { get; init; } = 64;
    public int KvBlockSize => 4;
    public int ContextLength { get; init; } = 64;

    public StepResult Execute(StepPlan plan)
    {
        lock (Calls) Calls.Add((plan, Thread.CurrentThread.Name));
        if (Gate is { } g && !g.Wait(TimeSpan.FromSeconds(10))) throw new TimeoutException("test gate never opened");
        if (Steps is { } permits && !permits.Wait(TimeSpan.FromSeconds(10))) throw new TimeoutException("test step permit never came");
        comm.AllReduceSum(new float[4]);
        if (comm.Rank != 0) return StepResult.Empty;
        var logits = new List<float[]>();
        foreach (var s in plan.Sequences.Where(s => s.NeedsLogits))
        {
            var l = new float[Vocab];
            l[(s.Tokens[^1] + 1) % Vocab] = 1;
            logits.Add(l);
        }
        return new StepResult(logits, 1);
    }

    public void Dispose() => Disposed = true;
}

/// <summary>Collects a request's events (from the step loop's thread) for a test to read.</summary>
public sealed class RecordingClient : IServingClient
{
    public BlockingCollection<IControlMessage> Events { get; } = new();
    public void OnToken(TokenGenerated token) => Events.Add(token);
    public void OnCompleted(GenerationCompleted completed) => Events.Add(completed);
    public void OnFailed(GenerationFailed failed) => Events.Add(failed);

    public IControlMessage Next(TimeSpan timeout) =>
        Events.TryTake(out var e, timeout) ? e : throw new TimeoutException("no event from the step loop");

    /// <summary>Every event up to and including the request's last one.</summary>
    public List<IControlMessage> UntilDone(TimeSpan timeout)
    {
        var all = new List<IControlMessage>();
        while (true)
        {
            var e = Next(timeout);
            all.Add(e);
            if (e is GenerationCompleted or GenerationFailed) return all;
        }
    }
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
