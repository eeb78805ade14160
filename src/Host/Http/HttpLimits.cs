using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace ActorRing.Host.Http;

/// <summary>
/// What a client may cost rank 0's HTTP server. Rank 0 is also the coordinator and a compute rank, and its
/// sockets and memory are shared with the ring, so a slow or idle client must not hold resources for long.
/// All waits derive from one setting, <c>serve --http-timeout</c> (default <see cref="DefaultTimeout"/>):
/// <list type="bullet">
/// <item>the request line and headers must arrive within the timeout (Kestrel's default is 30 s);</item>
/// <item>a body must arrive at <see cref="MinBodyBytesPerSecond"/> or faster once the timeout has passed as a
/// grace period (Kestrel's default grace is 5 s, which a prompt typed over a slow link could miss);</item>
/// <item>a connection idle between requests (or that never sends a byte) is closed after
/// <see cref="KeepAliveFactor"/> times the timeout (Kestrel's default is 130 s, which lets idle sockets pile up);</item>
/// <item>at most <see cref="MaxConnections"/> connections at once: far below the process's file limit, so a flood
/// of sockets cannot starve the ring and control-plane sockets of the same process.</item>
/// </list>
/// Kestrel checks these once a second, so a timed-out client is cut within about a second of its deadline. Bodies
/// over <see cref="OpenAiApi.MaxBodyBytes"/> get 413, with or without a Content-Length (chunked bodies are counted
/// as they are read).
/// </summary>
public static class HttpLimits
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);
    public const int KeepAliveFactor = 3;
    public const double MinBodyBytesPerSecond = 240;
    public const int MaxConnections = 1000;

    public static void Apply(KestrelServerLimits limits, TimeSpan timeout)
    {
        limits.MaxRequestBodySize = OpenAiApi.MaxBodyBytes;
        limits.RequestHeadersTimeout = timeout;
        limits.KeepAliveTimeout = timeout * KeepAliveFactor;
        limits.MinRequestBodyDataRate = new MinDataRate(MinBodyBytesPerSecond, timeout);
        limits.MaxConcurrentConnections = MaxConnections;
        limits.MaxConcurrentUpgradedConnections = MaxConnections;
    }
}
