using System.Net;
using System.Text;

namespace ActorRing.Transport;

/// <summary>Tunables of the ring transport. The defaults suit a LAN or loopback ring.</summary>
public sealed record RingOptions
{
    public const string SecretEnvironmentVariable = "ACTORRING_SECRET";

    /// <summary>Address the listener binds (the left neighbour dials it). Default: all interfaces.</summary>
    public IPAddress BindAddress { get; init; } = IPAddress.Any;

    /// <summary>How long to keep dialling the right neighbour and waiting for the left one.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>One handshake (either socket) must complete within this, so a silent stray frees the slot.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Deadline of one collective: a neighbour that sends nothing for this long is declared dead.</summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Shared secret every rank proves in the handshake (HMAC-SHA256); never sent in clear.</summary>
    public byte[] ClusterSecret { get; init; } = [];

    /// <summary>
    /// All-reduce messages up to this many bytes take the latency path (full vectors, N−1 hops); larger ones
    /// take pipelined reduce-scatter + all-gather. Null (the default) uses the measured crossover
    /// (<see cref="MeasuredCrossoverBytes"/>).
    /// </summary>
    public int? SmallMessageMaxBytes { get; init; }

    /// <summary>
    /// Where the two all-reduce paths cross, measured with
    /// <c>actorring bench allreduce --world-size N --algorithm latency|ring --sizes 16KiB,...,1MiB --iters 300</c>
    /// on the 2-core loopback reference machine (medians; figures in README): at N=2 both paths move the same
    /// bytes and the ring path's pipelining wins from 128 KiB (134 vs 157 µs) while they tie at 64 KiB;
    /// at N=3 and N=4 the latency path wins up to 128 KiB (222 vs 238 µs, 440 vs 516 µs) and loses from
    /// 256 KiB (374 vs 322 µs, 807 vs 698 µs), since it moves (N−1)·S bytes against 2(N−1)/N·S.
    /// </summary>
    public static int MeasuredCrossoverBytes(int worldSize) => worldSize <= 2 ? 64 * 1024 : 128 * 1024;

    /// <summary>The crossover in effect for a ring of <paramref name="worldSize"/> ranks.</summary>
    public int SmallMessageMaxBytesFor(int worldSize) => SmallMessageMaxBytes ?? MeasuredCrossoverBytes(worldSize);

    /// <summary>Bytes per pipelined chunk on the large path (one frame each).</summary>
    public int ChunkBytes { get; init; } = 256 * 1024;

    /// <summary>SO_SNDBUF / SO_RCVBUF for the ring sockets; large enough for a whole latency-path message.</summary>
    public int SocketBufferBytes { get; init; } = 4 * 1024 * 1024;

    /// <summary>
    /// How long a rank waiting for a neighbour busy-polls its sockets before it sleeps in <c>poll</c>. Null
    /// (the default) picks automatically: <see cref="DefaultSpin"/> when every busy thread on this machine
    /// can have a core of its own (<see cref="BusyThreadsOnThisMachine"/> ≤ cores), otherwise zero, because
    /// spinning on a shared core steals the time of the very rank being waited for.
    /// </summary>
    public TimeSpan? SpinBeforeSleep { get; init; }

    /// <summary>
    /// Threads this machine's ranks keep busy, for the automatic <see cref="SpinBeforeSleep"/>. Null: the
    /// world size when the right neighbour is on this machine (a ring on one host), else one.
    /// </summary>
    public int? BusyThreadsOnThisMachine { get; init; }

    /// <summary>The automatic spin: long enough to cover a neighbour's few-KiB message, short enough that an idle rank sleeps.</summary>
    public static readonly TimeSpan DefaultSpin = TimeSpan.FromMilliseconds(1);

    /// <summary>The spin in effect for the rank of <paramref name="config"/>.</summary>
    public TimeSpan SpinFor(RingConfig config)
    {
        if (SpinBeforeSleep is TimeSpan explicitSpin) return explicitSpin;
        int busy = BusyThreadsOnThisMachine ?? (RingConfig.IsThisMachine(config.RightIp) ? config.WorldSize : 1);
        return busy <= Environment.ProcessorCount ? DefaultSpin : TimeSpan.Zero;
    }

    /// <summary>Forces one all-reduce algorithm (used by the benchmark to measure the crossover).</summary>
    public AllReduceAlgorithm Algorithm { get; init; } = AllReduceAlgorithm.Auto;

    /// <summary>Reads the secret from <c>ACTORRING_SECRET</c>; empty when unset.</summary>
    public static byte[] SecretFromEnvironment()
    {
        string? s = Environment.GetEnvironmentVariable(SecretEnvironmentVariable);
        return string.IsNullOrEmpty(s) ? [] : Encoding.UTF8.GetBytes(s);
    }

    public static RingOptions FromEnvironment() => new() { ClusterSecret = SecretFromEnvironment() };
}

public enum AllReduceAlgorithm
{
    /// <summary>Pick by message size (<see cref="RingOptions.SmallMessageMaxBytes"/>).</summary>
    Auto,
    /// <summary>Full vectors passed N−1 hops, reduced locally in rank order.</summary>
    Latency,
    /// <summary>Pipelined ring reduce-scatter followed by all-gather.</summary>
    Ring,
}
