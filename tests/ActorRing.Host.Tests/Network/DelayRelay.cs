using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ActorRing.Host.Tests.Network;

/// <summary>How a <see cref="DelayRelay"/> delays what it forwards.</summary>
/// <param name="Delay">Held this long in each direction (one-way latency added to the link).</param>
/// <param name="Jitter">Plus a uniform random extra in [0, Jitter) per segment.</param>
/// <param name="LossRate">The probability that a segment is "lost": TCP cannot lose bytes it has acknowledged, so a
/// loss shows as the retransmission delay, the segment held an extra <paramref name="RetransmitDelay"/>, and every
/// later byte waits behind it (TCP's head-of-line blocking).</param>
/// <param name="RetransmitDelay">What a loss costs; Linux's minimum retransmission timeout is 200 ms.</param>
public sealed record LinkShape(TimeSpan Delay, TimeSpan Jitter = default, double LossRate = 0, TimeSpan RetransmitDelay = default)
{
    public static readonly LinkShape None = new(TimeSpan.Zero);

    public TimeSpan RetransmitDelayOrDefault => RetransmitDelay > TimeSpan.Zero ? RetransmitDelay : TimeSpan.FromMilliseconds(200);

    public override string ToString() =>
        $"{Delay.TotalMilliseconds:0.###} ms" + (Jitter > TimeSpan.Zero ? $" + 0..{Jitter.TotalMilliseconds:0.###} ms jitter" : "")
        + (LossRate > 0 ? $", {LossRate:P1} loss as +{RetransmitDelayOrDefault.TotalMilliseconds:0} ms" : "");
}

/// <summary>
/// A TCP forwarder that adds latency, for kernels without the <c>netem</c> qdisc. It accepts on one address and,
/// for every connection, dials the target; each direction has a reader that stamps every chunk it receives and a
/// writer that sends the chunk when its time has come. Order is kept (a chunk never leaves before the one ahead of
/// it), as TCP delivers. Holding uses <c>nanosleep</c>, which wakes within tens of microseconds, so a 1 ms delay is
/// about 1.05 ms and costs no spinning core.
/// <para>
/// Its threads ask for real-time scheduling (SCHED_FIFO, as root) so that they behave like the network, which
/// takes no CPU from the hosts: on a test machine whose cores the ranks keep busy (they busy-poll their sockets),
/// a normal thread waits for a time slice at every hop, and that wait, not the delay asked for, would be measured.
/// They sleep in blocking calls, so they cannot starve anyone.
/// </para>
/// </summary>
public sealed class DelayRelay : IDisposable
{
    private readonly Socket _listener;
    private readonly IPEndPoint _target;
    private readonly LinkShape _shape;
    private readonly Random _random;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentBag<Socket> _sockets = [];

    public DelayRelay(IPEndPoint listen, IPEndPoint target, LinkShape shape, int seed = 1)
    {
        _target = target;
        _shape = shape;
        _random = new Random(seed);
        _listener = new Socket(listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        _listener.Bind(listen);
        _listener.Listen(16);
        new Thread(AcceptLoop) { IsBackground = true, Name = $"relay {listen}->{target}" }.Start();
    }

    public IPEndPoint Endpoint => (IPEndPoint)_listener.LocalEndPoint!;

    /// <summary>Bytes forwarded, both directions.</summary>
    public long Bytes => Interlocked.Read(ref _bytes);
    private long _bytes;

    private void AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = _listener.Accept();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }
            var upstream = new Socket(_target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                upstream.Connect(_target);
            }
            catch (SocketException)
            {
                client.Dispose(); // the dialer sees a refused link and retries, as with no relay
                upstream.Dispose();
                continue;
            }
            client.NoDelay = true;
            _sockets.Add(client);
            _sockets.Add(upstream);
            Pipe(client, upstream);
            Pipe(upstream, client);
        }
    }

    private void Pipe(Socket from, Socket to)
    {
        var queue = new BlockingCollection<(long Due, byte[] Data, int Length)>();
        new Thread(() =>
        {
            AskForRealTime();
            var buffer = new byte[256 * 1024];
            long lastDue = 0;
            try
            {
                while (true)
                {
                    int n = from.Receive(buffer);
                    if (n == 0) break;
                    var delay = _shape.Delay;
                    lock (_random)
                    {
                        if (_shape.Jitter > TimeSpan.Zero) delay += _shape.Jitter * _random.NextDouble();
                        if (_shape.LossRate > 0 && _random.NextDouble() < _shape.LossRate) delay += _shape.RetransmitDelayOrDefault;
                    }
                    long due = Math.Max(lastDue, Stamp() + delay.Ticks);
                    lastDue = due;
                    queue.Add((due, buffer[..n], n));
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
            {
            }
            queue.CompleteAdding();
        }) { IsBackground = true, Name = "relay reader" }.Start();
        new Thread(() =>
        {
            AskForRealTime();
            try
            {
                foreach (var (due, data, length) in queue.GetConsumingEnumerable())
                {
                    long wait = due - Stamp();
                    if (wait > 0) Sleep(wait);
                    to.Send(data, 0, length, SocketFlags.None);
                    Interlocked.Add(ref _bytes, length);
                }
                to.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                from.Dispose(); // one side gone: end both, as a broken path would
            }
        }) { IsBackground = true, Name = "relay writer" }.Start();
    }

    /// <summary>Now, in ticks of 100 ns on a monotonic clock.</summary>
    private static long Stamp() => Clock.Elapsed.Ticks;

    private static readonly System.Diagnostics.Stopwatch Clock = System.Diagnostics.Stopwatch.StartNew();

    private static void Sleep(long ticks)
    {
        if (OperatingSystem.IsLinux())
        {
            var ts = new Timespec { Seconds = ticks / TimeSpan.TicksPerSecond, Nanoseconds = ticks % TimeSpan.TicksPerSecond * 100 };
            nanosleep(ref ts, IntPtr.Zero);
        }
        else Thread.Sleep(TimeSpan.FromTicks(ticks));
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int nanosleep(ref Timespec request, IntPtr remaining);

    /// <summary>SCHED_FIFO for the calling thread, else a nice of -15; silently neither where not allowed.</summary>
    private static void AskForRealTime()
    {
        if (!OperatingSystem.IsLinux()) return;
        int tid = (int)syscall(186 /* SYS_gettid on x86-64 */);
        var param = new SchedParam { Priority = 10 };
        if (sched_setscheduler(tid, 1 /* SCHED_FIFO */, ref param) != 0) setpriority(0 /* PRIO_PROCESS: a thread id here */, tid, -15);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct SchedParam
    {
        public int Priority;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern long syscall(long number);

    [DllImport("libc", SetLastError = true)]
    private static extern int sched_setscheduler(int pid, int policy, ref SchedParam param);

    [DllImport("libc", SetLastError = true)]
    private static extern int setpriority(int which, int who, int priority);

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        foreach (var s in _sockets) s.Dispose();
    }
}
