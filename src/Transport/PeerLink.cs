using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ActorRing.Transport;

/// <summary>What a blocking call belongs to: used for its deadline and to name the operation in errors.</summary>
internal readonly record struct OpContext(OpCode Code, uint Seq, string DType, long Count, long DeadlineTimestamp, TimeSpan Timeout)
{
    public string Describe() => $"{FrameHeader.OpName(Code)} #{Seq} ({DType}, {Count} elements)";
}

/// <summary>
/// One ring socket on the data path, driven through libc <c>writev</c>/<c>recv</c>/<c>poll</c> on a
/// non-blocking descriptor. Why not <see cref="Socket.Send(ReadOnlySpan{byte})"/>: after the async handshake
/// .NET routes synchronous calls through its epoll thread (an extra thread hop per call, tens of µs on a
/// loaded machine), and SO_RCVTIMEO would bound each call rather than the whole operation. Here every wait is
/// a <c>poll</c> bounded by the time left until the operation's deadline, and header and payload leave in one
/// system call.
/// </summary>
internal sealed unsafe partial class PeerLink : IDisposable
{
    private const int EINTR = 4, EAGAIN = 11;
    private const short POLLIN = 0x1, POLLOUT = 0x4;

    private readonly int _fd;
    private readonly long _spinTicks;

    /// <param name="spin">How long a wait busy-polls before it sleeps (see <see cref="RingOptions.SpinBeforeSleep"/>).</param>
    public PeerLink(Socket socket, string name, TimeSpan spin = default)
    {
        Socket = socket;
        Name = name;
        _spinTicks = (long)(spin.TotalSeconds * Stopwatch.Frequency);
        socket.Blocking = false;
        _fd = (int)socket.SafeHandle.DangerousGetHandle();
        DetachFromRuntimePoller(_fd);
    }

    public Socket Socket { get; }

    /// <summary>E.g. "left neighbour rank 2 (127.0.0.1:41234)".</summary>
    public string Name { get; }

    public void SendFrame(in FrameHeader header, byte* payload, long length, in OpContext op)
    {
        byte* hdr = stackalloc byte[FrameHeader.Size];
        header.Write(new Span<byte>(hdr, FrameHeader.Size));
        Iovec* iov = stackalloc Iovec[2];
        iov[0] = new Iovec { Base = hdr, Len = FrameHeader.Size };
        iov[1] = new Iovec { Base = payload, Len = (nuint)length };
        int first = 0, count = length > 0 ? 2 : 1;
        while (first < count)
        {
            nint n = writev(_fd, iov + first, count - first);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == EINTR) continue;
                if (errno == EAGAIN)
                {
                    WaitReady(POLLOUT, op, "accepted no data");
                    continue;
                }
                throw Closed(op, $"send failed (errno {errno}: {Marshal.GetPInvokeErrorMessage(errno)})");
            }
            // Advance over what the kernel took; a partial write can end inside either iovec.
            nuint left = (nuint)n;
            while (first < count && left >= iov[first].Len)
            {
                left -= iov[first].Len;
                first++;
            }
            if (first < count)
            {
                iov[first].Base = (byte*)iov[first].Base + left;
                iov[first].Len -= left;
            }
        }
    }

    public void ReceiveExact(byte* dst, long length, in OpContext op)
    {
        while (length > 0)
        {
            long n = TryReceive(dst, length, op);
            if (n == 0)
            {
                WaitReady(POLLIN, op, "sent nothing");
                continue;
            }
            dst += n;
            length -= n;
        }
    }

    /// <summary>
    /// Reads header and payload into <paramref name="buffer"/> (header first, payload after it) with as few
    /// system calls as the kernel allows, checking the header as soon as its 16 bytes are in.
    /// </summary>
    public void ReceiveFrame(byte* buffer, long payloadLength, in FrameHeader expected, in OpContext op)
    {
        long total = FrameHeader.Size + payloadLength, got = 0;
        bool checkedHeader = false;
        while (got < total)
        {
            // Asking for header and payload at once saves a system call per frame on the latency path. A bad
            // frame's bytes can only land in this fixed-size buffer, and it is rejected when the header is in.
            long want = total - got;
            long n = TryReceive(buffer + got, want, op);
            if (n == 0)
            {
                WaitReady(POLLIN, op, "sent nothing");
                continue;
            }
            got += n;
            if (!checkedHeader && got >= FrameHeader.Size)
            {
                CheckHeader(new ReadOnlySpan<byte>(buffer, FrameHeader.Size), expected, op);
                checkedHeader = true;
            }
        }
    }

    /// <summary>Reads the next header and checks it is exactly <paramref name="expected"/>.</summary>
    public void ReceiveHeader(in FrameHeader expected, in OpContext op)
    {
        byte* hdr = stackalloc byte[FrameHeader.Size];
        ReceiveExact(hdr, FrameHeader.Size, op);
        CheckHeader(new ReadOnlySpan<byte>(hdr, FrameHeader.Size), expected, op);
    }

    public void CheckHeader(ReadOnlySpan<byte> bytes, in FrameHeader expected, in OpContext op)
    {
        if (!FrameHeader.TryRead(bytes, out var got))
            throw new CollectiveDesyncException($"{op.Describe()}: {Name} sent a corrupt frame (bad marker 0x{bytes[0]:X2})");
        string? mismatch = expected.Mismatch(got);
        if (mismatch is not null) throw new CollectiveDesyncException($"{op.Describe()}: {Name}: {mismatch}");
    }

    private void WaitReady(short events, in OpContext op, string silentWhat)
    {
        PollFd self = new() { Fd = _fd, Events = events };
        if (SpinUntilReady(&self, 1, _spinTicks)) return;
        while (true)
        {
            long left = op.DeadlineTimestamp - Stopwatch.GetTimestamp();
            if (left <= 0)
            {
                throw new CollectivePeerTimeoutException(
                    $"{op.Describe()}: {Name} {silentWhat} before the {op.Timeout.TotalSeconds:0.###} s operation deadline");
            }
            int ms = (int)Math.Min(int.MaxValue, (left * 1000 + Stopwatch.Frequency - 1) / Stopwatch.Frequency);
            PollFd pfd = new() { Fd = _fd, Events = events };
            int r = poll(&pfd, 1, ms);
            if (r > 0) return; // readable/writable, or an error/hang-up the next recv/writev reports
            if (r < 0 && Marshal.GetLastPInvokeError() != EINTR)
                throw Closed(op, $"poll failed (errno {Marshal.GetLastPInvokeError()})");
        }
    }

    /// <summary>Writes what the kernel takes now of header+payload from <paramref name="offset"/>; 0 when full.</summary>
    public long TrySend(byte* header, byte* payload, long payloadLength, long offset, in OpContext op)
    {
        Iovec* iov = stackalloc Iovec[2];
        int count = 0;
        if (offset < FrameHeader.Size)
        {
            iov[count++] = new Iovec { Base = header + offset, Len = (nuint)(FrameHeader.Size - offset) };
            if (payloadLength > 0) iov[count++] = new Iovec { Base = payload, Len = (nuint)payloadLength };
        }
        else
        {
            long at = offset - FrameHeader.Size;
            iov[count++] = new Iovec { Base = payload + at, Len = (nuint)(payloadLength - at) };
        }
        while (true)
        {
            nint n = writev(_fd, iov, count);
            if (n >= 0) return n;
            int errno = Marshal.GetLastPInvokeError();
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            throw Closed(op, $"send failed (errno {errno}: {Marshal.GetPInvokeErrorMessage(errno)})");
        }
    }

    /// <summary>Reads what has arrived (up to <paramref name="length"/> bytes); 0 when nothing is there yet.</summary>
    public long TryReceive(byte* dst, long length, in OpContext op)
    {
        while (true)
        {
            nint n = recv(_fd, dst, (nuint)Math.Min(length, int.MaxValue), 0);
            if (n > 0) return n;
            if (n == 0) throw Closed(op, "closed the connection");
            int errno = Marshal.GetLastPInvokeError();
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            throw Closed(op, $"receive failed (errno {errno}: {Marshal.GetPInvokeErrorMessage(errno)})");
        }
    }

    /// <summary>
    /// Reads what has arrived into the rest of a 16-byte header and, in the same system call, into the
    /// payload destination (at most <paramref name="payloadLength"/> bytes, so never past it); 0 when nothing
    /// is there yet. The caller checks the header as soon as it is complete; a bad frame can only have written
    /// inside the destination the operation was going to overwrite anyway.
    /// </summary>
    public long TryReceiveHeaderAndPayload(byte* header, long headerGot, byte* payload, long payloadLength, in OpContext op)
    {
        Iovec* iov = stackalloc Iovec[2];
        iov[0] = new Iovec { Base = header + headerGot, Len = (nuint)(FrameHeader.Size - headerGot) };
        iov[1] = new Iovec { Base = payload, Len = (nuint)payloadLength };
        while (true)
        {
            nint n = readv(_fd, iov, payloadLength > 0 ? 2 : 1);
            if (n > 0) return n;
            if (n == 0) throw Closed(op, "closed the connection");
            int errno = Marshal.GetLastPInvokeError();
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            throw Closed(op, $"receive failed (errno {errno}: {Marshal.GetPInvokeErrorMessage(errno)})");
        }
    }

    /// <summary>
    /// Sleeps until <paramref name="sendTo"/> can take data or <paramref name="receiveFrom"/> has data (either
    /// may be null), or throws a timeout naming the side(s) that stalled at the operation deadline.
    /// </summary>
    public static void WaitEither(PeerLink? sendTo, PeerLink? receiveFrom, in OpContext op)
    {
        PollFd* fds = stackalloc PollFd[2];
        int count = 0;
        if (sendTo is not null) fds[count++] = new PollFd { Fd = sendTo._fd, Events = POLLOUT };
        if (receiveFrom is not null) fds[count++] = new PollFd { Fd = receiveFrom._fd, Events = POLLIN };
        if (SpinUntilReady(fds, count, (sendTo ?? receiveFrom)?._spinTicks ?? 0)) return;
        while (true)
        {
            long left = op.DeadlineTimestamp - Stopwatch.GetTimestamp();
            if (left <= 0)
            {
                var parts = new List<string>();
                if (receiveFrom is not null) parts.Add($"{receiveFrom.Name} sent nothing");
                if (sendTo is not null) parts.Add($"{sendTo.Name} accepted no data");
                throw new CollectivePeerTimeoutException(
                    $"{op.Describe()}: {string.Join(" and ", parts)} before the {op.Timeout.TotalSeconds:0.###} s operation deadline");
            }
            int ms = (int)Math.Min(int.MaxValue, (left * 1000 + Stopwatch.Frequency - 1) / Stopwatch.Frequency);
            int r = poll(fds, (nuint)count, ms);
            if (r > 0) return;
            if (r < 0 && Marshal.GetLastPInvokeError() != EINTR)
                throw new CollectivePeerClosedException($"{op.Describe()}: poll failed (errno {Marshal.GetLastPInvokeError()})");
        }
    }

    /// <summary>
    /// Takes the socket out of .NET's own epoll set. The handshake used the async socket API, which registered
    /// the descriptor (edge-triggered) with the runtime's socket engine for the rest of its life; every frame
    /// that then arrives wakes the engine's thread, which hands the (empty) event to a thread-pool worker.
    /// perf sched showed about 1,800 engine and 5,000 worker wake-ups a second during llama-160m decode at
    /// world size 2, on the very cores the ranks compute on. This data path never uses the async API again
    /// (it waits in its own <c>poll</c>), so the registration is removed from every epoll instance of the
    /// process; where the descriptor is not registered the call fails with ENOENT, which is ignored.
    /// </summary>
    private static void DetachFromRuntimePoller(int fd)
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            foreach (var entry in new DirectoryInfo("/proc/self/fd").EnumerateFileSystemInfos())
            {
                if (entry.LinkTarget != "anon_inode:[eventpoll]" || !int.TryParse(entry.Name, out int epfd)) continue;
                EpollEvent unused = default;
                _ = epoll_ctl(epfd, EpollCtlDel, fd, &unused);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No /proc: the registration stays; results are the same, only with more wake-ups.
        }
    }

    /// <summary>
    /// Polls without sleeping for up to <paramref name="spinTicks"/>; true as soon as a descriptor is ready.
    /// A sleeping <c>poll</c> costs a wake-up (20–30 µs on this VM) on every message; busy-polling, as MPI's
    /// TCP transport does, brought the 16 KiB all-reduce at N=2 from about 50 µs to 25–30 µs.
    /// </summary>
    private static bool SpinUntilReady(PollFd* fds, int count, long spinTicks)
    {
        if (spinTicks <= 0) return false;
        long until = Stopwatch.GetTimestamp() + spinTicks;
        do
        {
            if (poll(fds, (nuint)count, 0) != 0) return true; // ready, or an error the caller's poll reports
        } while (Stopwatch.GetTimestamp() < until);
        return false;
    }

    private CollectivePeerClosedException Closed(in OpContext op, string what) =>
        new($"{op.Describe()}: {Name} {what}");

    /// <summary>Wakes any thread blocked on this link (it then sees the connection as closed).</summary>
    public void Shutdown()
    {
        try
        {
            Socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed: nothing left to wake.
        }
    }

    public void Dispose()
    {
        Shutdown();
        Socket.Dispose();
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Iovec
    {
        public void* Base;
        public nuint Len;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint writev(int fd, Iovec* iov, int iovcnt);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint readv(int fd, Iovec* iov, int iovcnt);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint recv(int fd, void* buf, nuint len, int flags);

    private const int EpollCtlDel = 2;

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    private struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_ctl(int epfd, int op, int fd, EpollEvent* ev);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int poll(PollFd* fds, nuint nfds, int timeout);
}
