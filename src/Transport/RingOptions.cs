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
    /// All-reduce messages up to this many bytes take the latency path (full vectors, N−1 hops, one thread);
    /// larger ones take pipelined reduce-scatter + all-gather. Measured with
    /// <c>actorring bench allreduce --algorithm latency|ring</c> on loopback at N=2..4 (see README): the two
    /// cross between 64 KiB and 256 KiB on the 2-core reference machine; 128 KiB sits between.
    /// </summary>
    public int SmallMessageMaxBytes { get; init; } = 128 * 1024;

    /// <summary>Bytes per pipelined chunk on the large path (one frame each).</summary>
    public int ChunkBytes { get; init; } = 256 * 1024;

    /// <summary>SO_SNDBUF / SO_RCVBUF for the ring sockets; large enough for a whole latency-path message.</summary>
    public int SocketBufferBytes { get; init; } = 4 * 1024 * 1024;

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
