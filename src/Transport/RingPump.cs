namespace ActorRing.Transport;

/// <summary>
/// The frames one rank expects from its left neighbour during a pipelined operation, in order, and what to
/// do when each has arrived (typically: reduce it and queue the next send).
/// </summary>
internal unsafe interface IRingSchedule
{
    int FrameCount { get; }

    /// <summary>Where frame <paramref name="index"/> goes and what its header must be.</summary>
    void Expect(int index, out FrameHeader header, out byte* destination, out long length);

    void OnReceived(int index, RingPump pump);
}

/// <summary>
/// Single-threaded progress engine for pipelined operations. Both sockets are non-blocking; the loop pushes
/// queued frames to the right neighbour until its socket buffer is full, pulls frames from the left one
/// until nothing is pending, and sleeps in one <c>poll</c> on both only when neither can move. So sending
/// and receiving proceed at the same time without a second thread: on a 2-core machine hosting several
/// ranks, a sender thread per rank cost more in context switches than it gained (A/B at N=2 on the loaded
/// 2-core machine, medians of 3 alternating runs: 4 MiB 4.1–4.8 ms with this loop against 5.3–7.4 ms with
/// a sender thread; 64 MiB equal at about 69 ms).
/// Memory handed to <see cref="Send"/> must stay valid and unchanged until it has been written, which the
/// data dependencies of the ring algorithms guarantee (a region is overwritten only by data that could not
/// exist before this rank's earlier send of it completed).
/// </summary>
internal sealed unsafe class RingPump
{
    private struct Pending
    {
        public byte* Payload;
        public long Length;
        public FrameHeader Header;
    }

    private Pending[] _sends = new Pending[64];
    private int _sendCount, _sendNext;
    private long _sendOffset;
    private readonly byte[] _headerBytes = GC.AllocateArray<byte>(FrameHeader.Size * 2, pinned: true);

    /// <summary>Payload bytes handed to <see cref="Send"/> since the pump was made (headers not counted).</summary>
    public long PayloadBytesSent { get; private set; }

    public void Send(byte* payload, long length, in FrameHeader header)
    {
        PayloadBytesSent += length;
        if (_sendCount == _sends.Length) Array.Resize(ref _sends, _sends.Length * 2);
        _sends[_sendCount++] = new Pending { Payload = payload, Length = length, Header = header };
    }

    public void Run<TSchedule>(PeerLink right, PeerLink left, ref TSchedule schedule, in OpContext op)
        where TSchedule : IRingSchedule
    {
        fixed (byte* headers = _headerBytes)
        {
            byte* sendHeader = headers, recvHeader = headers + FrameHeader.Size;
            bool sendHeaderReady = false;
            int frames = schedule.FrameCount, recvIndex = 0;
            long recvGot = 0;
            FrameHeader expected = default;
            byte* recvDst = null;
            long recvLength = 0;
            if (frames > 0) schedule.Expect(0, out expected, out recvDst, out recvLength);

            while (recvIndex < frames || _sendNext < _sendCount)
            {
                bool progressed = false;
                while (_sendNext < _sendCount)
                {
                    ref var item = ref _sends[_sendNext];
                    if (!sendHeaderReady)
                    {
                        item.Header.Write(new Span<byte>(sendHeader, FrameHeader.Size));
                        sendHeaderReady = true;
                    }
                    long n = right.TrySend(sendHeader, item.Payload, item.Length, _sendOffset, op);
                    if (n == 0) break;
                    progressed = true;
                    _sendOffset += n;
                    if (_sendOffset == FrameHeader.Size + item.Length)
                    {
                        _sendNext++;
                        _sendOffset = 0;
                        sendHeaderReady = false;
                    }
                }
                while (recvIndex < frames)
                {
                    long n;
                    if (recvGot < FrameHeader.Size)
                    {
                        // One readv for header and payload saves a system call per frame (it matters for the
                        // few-KiB decode messages).
                        n = left.TryReceiveHeaderAndPayload(recvHeader, recvGot, recvDst, recvLength, op);
                        if (n == 0) break;
                        long before = recvGot;
                        recvGot += n;
                        progressed = true;
                        if (recvGot < FrameHeader.Size) continue;
                        if (before < FrameHeader.Size)
                            left.CheckHeader(new ReadOnlySpan<byte>(recvHeader, FrameHeader.Size), expected, op);
                    }
                    else
                    {
                        long at = recvGot - FrameHeader.Size;
                        n = left.TryReceive(recvDst + at, recvLength - at, op);
                        if (n == 0) break;
                        recvGot += n;
                    }
                    progressed = true;
                    if (recvGot == FrameHeader.Size + recvLength)
                    {
                        schedule.OnReceived(recvIndex, this);
                        recvIndex++;
                        recvGot = 0;
                        if (recvIndex < frames) schedule.Expect(recvIndex, out expected, out recvDst, out recvLength);
                        // Forward what was just reduced before draining more input, so the right neighbour can
                        // start on it while we keep receiving (this is what makes the chunks a pipeline).
                        if (_sendNext < _sendCount) break;
                    }
                }
                if (!progressed)
                {
                    // Sleep at once rather than spin: polling 50–200 µs before sleeping made 16 KiB slower
                    // (46–59 µs against 33–37 µs median) and 4 MiB much slower on the shared 2-core machine.
                    PeerLink.WaitEither(_sendNext < _sendCount ? right : null, recvIndex < frames ? left : null, op);
                }
            }
        }
    }

    /// <summary>Forgets queued sends (after a completed or failed operation).</summary>
    public void Reset()
    {
        _sendCount = 0;
        _sendNext = 0;
        _sendOffset = 0;
    }
}
