using System.Diagnostics;
using System.Numerics.Tensors;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

namespace ActorRing.Transport;

/// <summary>
/// Collectives over a TCP ring: this rank receives from its left neighbour and sends to its right one.
/// Created by <see cref="ConnectAsync"/>. After any failed operation the ring is unusable (the byte streams
/// may be mid-frame), and every later call throws until a new communicator is formed.
/// </summary>
public sealed unsafe partial class RingCommunicator : ICollectives
{
    private readonly RingConfig _config;
    private readonly RingOptions _options;
    private readonly ILogger _log;
    private readonly PeerLink? _left, _right;
    private readonly NativeBuffer _slots = new(), _acc = new(), _tmp = new(), _work = new();
    private readonly RingPump _pump = new();
    // Held for the whole of each operation, so Dispose (e.g. from an actor noticing a dead peer while the
    // compute thread is mid-operation) frees scratch memory only after that operation has unwound.
    private readonly object _opLock = new();
    private uint _seq;
    private volatile string? _fault;
    private int _disposed;

    private RingCommunicator(RingConfig config, RingOptions options, ILogger log, Socket? left, Socket? right)
    {
        _config = config;
        _options = options;
        _log = log;
        if (left is not null && right is not null)
        {
            var spin = options.SpinFor(config);
            _left = new PeerLink(left, $"left neighbour rank {config.LeftRank} ({left.RemoteEndPoint})", spin);
            _right = new PeerLink(right, $"right neighbour rank {config.RightRank} ({right.RemoteEndPoint})", spin);
        }
    }

    /// <summary>The two neighbour sockets (none at world size 1), for tests that inspect them.</summary>
    internal IEnumerable<Socket> DataSockets => _left is null ? [] : [_left.Socket, _right!.Socket];

    public int Rank => _config.Rank;
    public int WorldSize => _config.WorldSize;
    public RingConfig Config => _config;
    public RingOptions Options => _options;

    /// <summary>
    /// Overrides <see cref="RingOptions.Algorithm"/> for later all-reduces (benchmarks and tests measure both
    /// paths on one ring). Every rank must set the same value, or frames will not match (a desync error).
    /// </summary>
    public AllReduceAlgorithm? AlgorithmOverride { get; set; }

    /// <summary>Whether an all-reduce of <paramref name="bytes"/> takes the latency path on this ring.</summary>
    public bool UsesLatencyPath(long bytes) => (AlgorithmOverride ?? _options.Algorithm) switch
    {
        // The latency path sends a message as one frame, whose length field is 32-bit.
        AllReduceAlgorithm.Latency => bytes <= int.MaxValue,
        AllReduceAlgorithm.Ring => bytes == 0,
        _ => bytes <= _options.SmallMessageMaxBytesFor(WorldSize),
    };

    /// <summary>True once an operation failed; the ring must be formed again.</summary>
    public bool IsFaulted => _fault is not null;

    /// <summary>Payload bytes this rank has sent to its right neighbour over every collective so far (frame headers excluded).</summary>
    public long PayloadBytesSent => _pump.PayloadBytesSent;

    // ---------------------------------------------------------------- all-reduce

    public void AllReduceSum(Span<float> data)
    {
        fixed (float* p = data) AllReduceCore((byte*)p, data.Length, DType.F32);
    }

    public void AllReduceSum(Span<Half> data)
    {
        fixed (Half* p = data) AllReduceCore((byte*)p, data.Length, DType.F16);
    }

    public void AllReduceSum(Span<BFloat16> data)
    {
        fixed (BFloat16* p = data) AllReduceCore((byte*)p, data.Length, DType.BF16);
    }

    public void AllReduceSum(void* data, long count, DType dtype)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count > 0 && data is null) throw new ArgumentNullException(nameof(data));
        _ = dtype.SizeInBytes(); // rejects unknown values
        AllReduceCore((byte*)data, count, dtype);
    }

    private void AllReduceCore(byte* data, long count, DType dtype)
    {
        lock (_opLock) AllReduceLocked(data, count, dtype);
    }

    private void AllReduceLocked(byte* data, long count, DType dtype)
    {
        var op = Begin(OpCode.AllReduce, DTypeName(dtype), count);
        if (WorldSize == 1) return;
        long bytes = count * dtype.SizeInBytes();
        // Cost model (α = per-hop latency, β = time per byte, S = message bytes):
        //   latency path:            (N−1)·α + (N−1)·S·β, one thread, no chunking, no hand-off
        //   reduce-scatter+all-gather: 2(N−1)·α + 2(N−1)/N·S·β, pipelined with send and receive overlapped
        // For small S the α term dominates and the latency path wins; SmallMessageMaxBytes is where the two
        // measured curves cross (see RingOptions). Both paths run on the non-blocking RingPump, so neither
        // can deadlock on full socket buffers, whatever their size.
        bool latency = UsesLatencyPath(bytes);
        try
        {
            if (latency) LatencyAllReduce(data, count, dtype, op);
            else RingAllReduce(data, count, dtype, op);
        }
        catch (CollectiveException e) when (MarkFaulted(e))
        {
            throw; // unreachable: MarkFaulted returns false so the original exception keeps its stack
        }
    }

    /// <summary>
    /// Every rank passes full vectors N−1 hops around the ring (forwarding what it received last step), then
    /// sums all N in rank order 0..N−1. The same inputs in the same order give bit-identical sums everywhere.
    /// </summary>
    private void LatencyAllReduce(byte* data, long count, DType dtype, in OpContext op)
    {
        int n = WorldSize, r = Rank, es = dtype.SizeInBytes();
        long bytes = count * es;
        long stride = (bytes + 63) & ~63L;
        byte* slots = _slots.Ensure(Math.Max(1, stride * (n - 1)));
        var schedule = new LatencySchedule { N = n, Bytes = bytes, Stride = stride, Slots = slots, DType = dtype, Es = es, Op = op.Code, Seq = op.Seq };
        _pump.Reset();
        _pump.Send(data, bytes, new FrameHeader(op.Code, (byte)dtype, (byte)es, op.Seq, 0, (uint)bytes));
        _pump.Run(_right!, _left!, ref schedule, op);
        if (count == 0) return;

        // Slot s holds the vector that started at rank (r − s − 1) mod N.
        var sources = stackalloc nint[n];
        for (int k = 0; k < n; k++)
            sources[k] = k == r ? (nint)data : (nint)(slots + Mod(r - k - 1, n) * stride);
        SumInRankOrder(sources, n, (int)count, dtype, data);
    }

    /// <summary>Step s receives the vector of rank r−s−1 into slot s and forwards it at step s+1.</summary>
    private struct LatencySchedule : IRingSchedule
    {
        public int N, Es;
        public long Bytes, Stride;
        public byte* Slots;
        public DType DType;
        public OpCode Op;
        public uint Seq;

        public readonly int FrameCount => N - 1;

        public readonly void Expect(int index, out FrameHeader header, out byte* destination, out long length)
        {
            header = new FrameHeader(Op, (byte)DType, (byte)Es, Seq, (uint)index, (uint)Bytes);
            destination = Slots + index * Stride;
            length = Bytes;
        }

        public readonly void OnReceived(int index, RingPump pump)
        {
            if (index + 1 < N - 1)
                pump.Send(Slots + index * Stride, Bytes, new FrameHeader(Op, (byte)DType, (byte)Es, Seq, (uint)(index + 1), (uint)Bytes));
        }
    }

    private void SumInRankOrder(nint* sources, int n, int count, DType dtype, byte* dst)
    {
        if (dtype == DType.F32)
        {
            var d = new Span<float>(dst, count);
            if (n == 2)
            {
                TensorPrimitives.Add(F(sources[0], count), F(sources[1], count), d);
                return;
            }
            // dst is also this rank's own input, so partial sums go to scratch until the last addition.
            var acc = new Span<float>(_acc.Ensure(count * 4L), count);
            TensorPrimitives.Add(F(sources[0], count), F(sources[1], count), acc);
            for (int k = 2; k < n - 1; k++) TensorPrimitives.Add(acc, F(sources[k], count), acc);
            TensorPrimitives.Add(acc, F(sources[n - 1], count), d);
            return;
        }
        // 16-bit: widen each source, accumulate in float32, round once. Blocks keep the work in L1.
        const int Block = 2048;
        float* accBlock = (float*)_acc.Ensure(2 * Block * 4L);
        float* tmpBlock = accBlock + Block;
        for (int start = 0; start < count; start += Block)
        {
            int len = Math.Min(Block, count - start);
            var acc = new Span<float>(accBlock, len);
            var tmp = new Span<float>(tmpBlock, len);
            Widen16(dtype, (byte*)sources[0] + start * 2L, acc);
            for (int k = 1; k < n; k++)
            {
                Widen16(dtype, (byte*)sources[k] + start * 2L, tmp);
                TensorPrimitives.Add(acc, tmp, acc);
            }
            Narrow16(dtype, acc, dst + start * 2L);
        }
    }

    /// <summary>
    /// Ring reduce-scatter then all-gather, each of N−1 steps, every segment cut into K chunks, driven by
    /// <see cref="RingPump"/>: a chunk is forwarded as soon as it is reduced, while later chunks are still
    /// arriving, so both directions of every link stay busy. Segment j is fully reduced at one rank only and
    /// then copied around, so every rank holds identical bits. 16-bit inputs are widened into a float32 work
    /// buffer first: partial sums travel as float32 and the owner rounds once.
    /// </summary>
    private void RingAllReduce(byte* data, long count, DType dtype, in OpContext op)
    {
        int n = WorldSize, es = dtype.SizeInBytes();
        float* work = dtype == DType.F32 ? (float*)data : (float*)_work.Ensure(count * 4);
        if (dtype != DType.F32) ForEachPiece(count, (start, len) => Widen16(dtype, data + start * 2, new Span<float>(work + start, len)));
        long maxSeg = (count + n - 1) / n;
        int k = (int)Math.Max(1, (maxSeg * 4 + _options.ChunkBytes - 1) / _options.ChunkBytes);
        long maxChunk = (maxSeg + k - 1) / k + 1;
        // tmp: one received chunk as float32, then room for the same chunk as 16-bit (the first step's input).
        byte* tmp = _tmp.Ensure(maxChunk * 6);
        var schedule = new AllReduceSchedule
        {
            N = n, R = Rank, K = k, Count = count, DType = dtype, Es = es,
            Work = work, Data = data, Tmp = (float*)tmp, Tmp16 = tmp + maxChunk * 4, Op = op.Code, Seq = op.Seq,
        };
        _pump.Reset();
        for (int i = 0; i < k; i++)
        {
            // The first step carries this rank's own input, which is exact in its own dtype, so 16-bit inputs
            // go as 16-bit (half the bytes); later steps carry float32 partial sums so rounding happens once.
            var (a, len) = Chunk(count, n, k, Rank, i);
            _pump.Send(data + a * es, len * es, Header(op, dtype, (uint)i, len * es));
        }
        _pump.Run(_right!, _left!, ref schedule, op);
    }

    private struct AllReduceSchedule : IRingSchedule
    {
        public int N, R, K, Es;
        public long Count;
        public DType DType;
        public float* Work, Tmp;
        public byte* Data, Tmp16;
        public OpCode Op;
        public uint Seq;

        public readonly int FrameCount => 2 * (N - 1) * K;

        public readonly void Expect(int index, out FrameHeader header, out byte* destination, out long length)
        {
            int step = index / K, i = index % K;
            if (step == 0)
            {
                var (_, len) = Chunk(Count, N, K, Mod(R - 1, N), i);
                header = new FrameHeader(Op, (byte)DType, (byte)Es, Seq, (uint)index, (uint)(len * Es));
                destination = DType == DType.F32 ? (byte*)Tmp : Tmp16;
                length = len * Es;
            }
            else if (step < N - 1)
            {
                var (_, len) = Chunk(Count, N, K, Mod(R - step - 1, N), i);
                header = new FrameHeader(Op, (byte)DType.F32, 4, Seq, (uint)index, (uint)(len * 4));
                destination = (byte*)Tmp;
                length = len * 4;
            }
            else
            {
                var (a, len) = Chunk(Count, N, K, Mod(R - (step - (N - 1)), N), i);
                header = new FrameHeader(Op, (byte)DType, (byte)Es, Seq, (uint)index, (uint)(len * Es));
                destination = Data + a * Es;
                length = len * Es;
            }
        }

        public readonly void OnReceived(int index, RingPump pump)
        {
            int step = index / K, i = index % K;
            if (step < N - 1)
            {
                var (a, len) = Chunk(Count, N, K, Mod(R - step - 1, N), i);
                var w = new Span<float>(Work + a, (int)len);
                var t = new Span<float>(Tmp, (int)len);
                if (step == 0 && DType != DType.F32) Widen16(DType, Tmp16, t);
                TensorPrimitives.Add(w, t, w);
                if (step < N - 2)
                {
                    pump.Send((byte*)(Work + a), len * 4, new FrameHeader(Op, (byte)DType.F32, 4, Seq, (uint)((step + 1) * K + i), (uint)(len * 4)));
                    return;
                }
                // Fully reduced (this rank owns segment R+1): round once, then start its all-gather at once.
                if (DType != DType.F32) Narrow16(DType, w, Data + a * 2);
                pump.Send(Data + a * Es, len * Es, new FrameHeader(Op, (byte)DType, (byte)Es, Seq, (uint)((N - 1) * K + i), (uint)(len * Es)));
                return;
            }
            int s = step - (N - 1);
            if (s < N - 2)
            {
                var (a, len) = Chunk(Count, N, K, Mod(R - s, N), i);
                pump.Send(Data + a * Es, len * Es, new FrameHeader(Op, (byte)DType, (byte)Es, Seq, (uint)((step + 1) * K + i), (uint)(len * Es)));
            }
        }
    }

    private struct AllGatherSchedule : IRingSchedule
    {
        public int N, R, K, Es;
        public long[] Offsets;
        public byte* Output;
        public OpCode Op;
        public uint Seq;

        public readonly int FrameCount => (N - 1) * K;

        private readonly (long Start, long Length) Range(int block, int i) =>
            SubRange(Offsets[block], Offsets[block + 1] - Offsets[block], K, i);

        public readonly void Expect(int index, out FrameHeader header, out byte* destination, out long length)
        {
            int s = index / K, i = index % K;
            var (a, len) = Range(Mod(R - s - 1, N), i);
            header = new FrameHeader(Op, FrameHeader.RawDType, (byte)Es, Seq, (uint)index, (uint)(len * Es));
            destination = Output + a * Es;
            length = len * Es;
        }

        public readonly void OnReceived(int index, RingPump pump)
        {
            int s = index / K, i = index % K;
            if (s >= N - 2) return;
            var (a, len) = Range(Mod(R - s - 1, N), i);
            pump.Send(Output + a * Es, len * Es, new FrameHeader(Op, FrameHeader.RawDType, (byte)Es, Seq, (uint)((s + 1) * K + i), (uint)(len * Es)));
        }
    }

    // ---------------------------------------------------------------- all-gather / gather / broadcast / barrier

    public void AllGather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts) where T : unmanaged
    {
        lock (_opLock) AllGatherLocked(local, output, counts);
    }

    private void AllGatherLocked<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts) where T : unmanaged
    {
        long total = CheckCounts(counts, local.Length, nameof(local));
        if (output.Length < total)
            throw new ArgumentException($"output holds {output.Length} elements but the counts sum to {total}", nameof(output));
        var op = Begin(OpCode.AllGather, typeof(T).Name, total);
        int es = sizeof(T), n = WorldSize, r = Rank;
        var offsets = new long[n + 1];
        for (int j = 0; j < n; j++) offsets[j + 1] = offsets[j] + counts[j];
        local.CopyTo(output[(int)offsets[r]..]);
        if (n == 1) return;

        fixed (T* outPtr = output)
        {
            byte* o = (byte*)outPtr;
            long maxBlock = 0;
            for (int j = 0; j < n; j++) maxBlock = Math.Max(maxBlock, counts[j] * (long)es);
            int k = (int)Math.Max(1, (maxBlock + _options.ChunkBytes - 1) / _options.ChunkBytes);
            try
            {
                var schedule = new AllGatherSchedule { N = n, R = r, K = k, Es = es, Offsets = offsets, Output = o, Op = op.Code, Seq = op.Seq };
                _pump.Reset();
                for (int i = 0; i < k; i++)
                {
                    var (sa, sl) = SubRange(offsets[r], counts[r], k, i);
                    _pump.Send(o + sa * es, sl * es, Header(op, FrameHeader.RawDType, (byte)es, (uint)i, sl * es));
                }
                _pump.Run(_right!, _left!, ref schedule, op);
            }
            catch (CollectiveException e) when (MarkFaulted(e))
            {
                throw;
            }
        }
    }

    public void Gather<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts, int root) where T : unmanaged
    {
        lock (_opLock) GatherLocked(local, output, counts, root);
    }

    private void GatherLocked<T>(ReadOnlySpan<T> local, Span<T> output, ReadOnlySpan<int> counts, int root) where T : unmanaged
    {
        CheckRoot(root);
        long total = CheckCounts(counts, local.Length, nameof(local));
        if (Rank == root && output.Length < total)
            throw new ArgumentException($"root's output holds {output.Length} elements but the counts sum to {total}", nameof(output));
        var op = Begin(OpCode.Gather, typeof(T).Name, total);
        int es = sizeof(T), n = WorldSize, r = Rank;
        var offsets = new long[n + 1];
        for (int j = 0; j < n; j++) offsets[j + 1] = offsets[j] + counts[j];
        if (r == root) local.CopyTo(output[(int)offsets[r]..]);
        if (n == 1) return;

        long maxBlock = 0;
        for (int j = 0; j < n; j++) maxBlock = Math.Max(maxBlock, counts[j] * (long)es);
        int k = (int)Math.Max(1, (maxBlock + _options.ChunkBytes - 1) / _options.ChunkBytes);
        // A chain toward the root: the rank at chain position p (root+1+p) forwards the p blocks of the ranks
        // before it, then sends its own. The root only receives, so the chain has no cycle and a single
        // thread per rank cannot deadlock.
        int position = Mod(r - root - 1, n);
        try
        {
            fixed (T* localPtr = local)
            fixed (T* outPtr = output)
            {
                byte* scratch = r == root ? null : _tmp.Ensure(Math.Max(1, Math.Min(maxBlock, (long)_options.ChunkBytes) + 8));
                int blocksIn = r == root ? n - 1 : position;
                for (int p = 0; p < blocksIn; p++)
                {
                    int q = Mod(root + 1 + p, n);
                    for (int i = 0; i < k; i++)
                    {
                        var (a, len) = SubRange(offsets[q], counts[q], k, i);
                        var h = Header(op, FrameHeader.RawDType, (byte)es, (uint)(p * k + i), len * es);
                        byte* dst = r == root ? (byte*)outPtr + a * es : scratch;
                        _left!.ReceiveHeader(h, op);
                        _left.ReceiveExact(dst, len * es, op);
                        if (r != root) _right!.SendFrame(h, scratch, len * es, op);
                    }
                }
                if (r != root)
                {
                    for (int i = 0; i < k; i++)
                    {
                        var (a, len) = SubRange(0, counts[r], k, i);
                        var h = Header(op, FrameHeader.RawDType, (byte)es, (uint)(position * k + i), len * es);
                        _right!.SendFrame(h, (byte*)localPtr + a * es, len * es, op);
                    }
                }
            }
        }
        catch (CollectiveException e) when (MarkFaulted(e))
        {
            throw;
        }
    }

    public void Broadcast<T>(Span<T> data, int root) where T : unmanaged
    {
        lock (_opLock) BroadcastLocked(data, root);
    }

    private void BroadcastLocked<T>(Span<T> data, int root) where T : unmanaged
    {
        CheckRoot(root);
        var op = Begin(OpCode.Broadcast, typeof(T).Name, data.Length);
        int es = sizeof(T), n = WorldSize;
        if (n == 1) return;
        long bytes = (long)data.Length * es;
        int k = (int)Math.Max(1, (bytes + _options.ChunkBytes - 1) / _options.ChunkBytes);
        // A chain from the root around the ring; chunks let rank p+1 forward chunk i while rank p sends i+1.
        int distance = Mod(Rank - root, n);
        try
        {
            fixed (T* p = data)
            {
                for (int i = 0; i < k; i++)
                {
                    var (a, len) = SubRange(0, data.Length, k, i);
                    var h = Header(op, FrameHeader.RawDType, (byte)es, (uint)i, len * es);
                    byte* chunk = (byte*)p + a * es;
                    if (distance > 0)
                    {
                        _left!.ReceiveHeader(h, op);
                        _left.ReceiveExact(chunk, len * es, op);
                    }
                    if (distance < n - 1) _right!.SendFrame(h, chunk, len * es, op);
                }
            }
        }
        catch (CollectiveException e) when (MarkFaulted(e))
        {
            throw;
        }
    }

    public void Barrier()
    {
        lock (_opLock) BarrierLocked();
    }

    private void BarrierLocked()
    {
        var op = Begin(OpCode.Barrier, "none", 0);
        if (WorldSize == 1) return;
        // N−1 empty frames passed on like the latency all-reduce: the token received at step s proves that
        // ranks r−1 … r−s−1 have entered, so after N−1 steps every rank has.
        byte* hdr = stackalloc byte[FrameHeader.Size];
        try
        {
            for (int s = 0; s < WorldSize - 1; s++)
            {
                var h = new FrameHeader(op.Code, FrameHeader.RawDType, 0, op.Seq, (uint)s, 0);
                _right!.SendFrame(h, null, 0, op);
                _left!.ReceiveFrame(hdr, 0, h, op);
            }
        }
        catch (CollectiveException e) when (MarkFaulted(e))
        {
            throw;
        }
    }

    // ---------------------------------------------------------------- helpers

    private OpContext Begin(OpCode code, string dtype, long count)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_fault is string fault)
        {
            throw new CollectiveException(
                $"rank {Rank}: {FrameHeader.OpName(code)} refused: the ring broke in an earlier operation ({fault}); form a new ring");
        }
        uint seq = ++_seq;
        long deadline = Stopwatch.GetTimestamp() + (long)(_options.OperationTimeout.TotalSeconds * Stopwatch.Frequency);
        return new OpContext(code, seq, dtype, count, deadline, _options.OperationTimeout);
    }

    /// <summary>
    /// Records the failure and shuts both links so the sender thread stops touching the caller's memory
    /// before the exception reaches the caller. Returns false so it can run inside an exception filter.
    /// </summary>
    private bool MarkFaulted(Exception e)
    {
        _fault ??= e.Message;
        _log.LogError("rank {Rank}: collective failed: {Error}", Rank, e.Message);
        _left?.Shutdown();
        _right?.Shutdown();
        return false;
    }

    private static FrameHeader Header(in OpContext op, DType dtype, uint index, long bytes) =>
        new(op.Code, (byte)dtype, (byte)dtype.SizeInBytes(), op.Seq, index, CheckedLength(bytes));

    private static FrameHeader Header(in OpContext op, byte rawDType, byte elementSize, uint index, long bytes) =>
        new(op.Code, rawDType, elementSize, op.Seq, index, CheckedLength(bytes));

    private static uint CheckedLength(long bytes) =>
        bytes <= uint.MaxValue ? (uint)bytes : throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "frame too large; lower ChunkBytes");

    /// <summary>Chunk i (of k) of segment j (of n) of count elements: start and length in elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (long Start, long Length) Chunk(long count, int n, int k, int j, int i)
    {
        long segStart = count * j / n, segLen = count * (j + 1) / n - segStart;
        return SubRange(segStart, segLen, k, i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (long Start, long Length) SubRange(long start, long length, int k, int i)
    {
        long a = length * i / k, b = length * (i + 1) / k;
        return (start + a, b - a);
    }

    private static int Mod(int x, int n) => ((x % n) + n) % n;

    private static ReadOnlySpan<float> F(nint p, int count) => new((void*)p, count);

    private static void Widen16(DType dtype, byte* src, Span<float> dst)
    {
        if (dtype == DType.BF16) ReduceKernels.Widen(new ReadOnlySpan<BFloat16>(src, dst.Length), dst);
        else ReduceKernels.Widen(new ReadOnlySpan<Half>(src, dst.Length), dst);
    }

    private static void Narrow16(DType dtype, ReadOnlySpan<float> src, byte* dst)
    {
        if (dtype == DType.BF16) ReduceKernels.Narrow(src, new Span<BFloat16>(dst, src.Length));
        else ReduceKernels.Narrow(src, new Span<Half>(dst, src.Length));
    }

    private static void ForEachPiece(long count, Action<long, int> body)
    {
        for (long start = 0; start < count; start += 1 << 30) body(start, (int)Math.Min(1 << 30, count - start));
    }

    private static string DTypeName(DType dtype) => FrameHeader.DTypeName((byte)dtype, (byte)dtype.SizeInBytes());

    private long CheckCounts(ReadOnlySpan<int> counts, int localLength, string localName)
    {
        if (counts.Length != WorldSize)
            throw new ArgumentException($"counts has {counts.Length} entries, expected world size {WorldSize}", nameof(counts));
        long total = 0;
        foreach (int c in counts)
        {
            if (c < 0) throw new ArgumentException($"counts contains a negative value {c}", nameof(counts));
            total += c;
        }
        if (localLength != counts[Rank])
            throw new ArgumentException($"{localName} has {localLength} elements but counts[{Rank}] is {counts[Rank]}", localName);
        return total;
    }

    private void CheckRoot(int root)
    {
        if (root < 0 || root >= WorldSize)
            throw new ArgumentOutOfRangeException(nameof(root), root, $"root must be in [0, {WorldSize})");
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        // Shutting the sockets down first makes a running operation fail at once and release the lock.
        _left?.Shutdown();
        _right?.Shutdown();
        bool idle = Monitor.TryEnter(_opLock, TimeSpan.FromSeconds(10));
        try
        {
            _left?.Dispose();
            _right?.Dispose();
            if (!idle)
            {
                // Never free memory a stuck operation might still touch; leaking it is the safe choice.
                _log.LogError("rank {Rank}: an operation did not unwind within 10 s of Dispose; scratch memory is leaked", Rank);
                return;
            }
            _slots.Dispose();
            _acc.Dispose();
            _tmp.Dispose();
            _work.Dispose();
        }
        finally
        {
            if (idle) Monitor.Exit(_opLock);
        }
    }
}
