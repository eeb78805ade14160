using System.Net;
using System.Security.Cryptography;
using ActorRing.Transport;

namespace ActorRing.Host.Commands;

/// <summary>
/// Communicators for N ranks as threads of this process, over the real ring transport on loopback: each
/// rank listens on its own OS-chosen port on 127.0.0.1 and dials the next. The ranks share a fresh random
/// cluster secret, so nothing else on the machine can join.
/// </summary>
internal static class LocalRanks
{
    public static async Task<ICollectives[]> ConnectAsync(int worldSize, int threadsPerRank, CancellationToken ct)
    {
        var configs = RingConfig.ForLoopback(worldSize, sourcePrefix: "local");
        var options = new RingOptions
        {
            ClusterSecret = RandomNumberGenerator.GetBytes(32),
            BindAddress = IPAddress.Loopback,
            ConnectTimeout = TimeSpan.FromSeconds(30),
            BusyThreadsOnThisMachine = worldSize * threadsPerRank,
        };
        var connecting = configs.Select(c => RingCommunicator.ConnectAsync(c, options, null, ct)).ToArray();
        try
        {
            return await Task.WhenAll(connecting);
        }
        catch
        {
            foreach (var t in connecting.Where(t => t.IsCompletedSuccessfully)) t.Result.Dispose();
            throw;
        }
    }
}
