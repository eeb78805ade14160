using System.Net;
using System.Text.Json;
using ActorRing.Transport;
using Xunit.Abstractions;

namespace ActorRing.Host.Tests.Network;

/// <summary>
/// The cluster as on several machines: each rank in its own network namespace with its own address, ring files
/// whose <c>right_ip</c> is another host (the mistral.rs multi-machine example), every ring link through a
/// <see cref="DelayRelay"/> on the bridge host and capped at 1 Gbit/s by <c>tc tbf</c>. Skipped, with the reason,
/// where namespaces are not allowed.
/// </summary>
public sealed class MultiHostTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(120);
    internal const int RingPort = 29500;
    internal const int MasterPort = 29600;
    internal const int RelayPortBase = 29700;

    private static int[] PublishedGreedyIds() => JsonSerializer.Deserialize<int[]>(File.ReadAllText(
        Path.Combine(AppContext.BaseDirectory, "models", "stories260K", "expected", "greedy_bos_256.ids.json")))!;

    /// <summary>One generation across the namespaces: rank 0 runs <c>serve --prompt-ids ... --json</c>, the others
    /// <c>serve</c>. With a <paramref name="shape"/>, each rank's right neighbour is a relay on the bridge host that
    /// forwards to the real neighbour; without, the neighbour's own address. Returns rank 0's JSON line and the
    /// bytes the relays forwarded (both directions of every link).</summary>
    internal static async Task<(JsonElement Result, long RelayedBytes)> RunAsync(NamespaceCluster hosts, LinkShape? shape, string[] rank0Args, string[] sharedArgs, string dir)
    {
        int n = hosts.WorldSize;
        var relays = new List<DelayRelay>();
        var ranks = new List<RankProcess>();
        try
        {
            for (int r = 0; r < n; r++)
            {
                int right = (r + 1) % n;
                string rightIp = hosts.Address(right).ToString();
                int rightPort = RingPort;
                if (shape is not null)
                {
                    var relay = new DelayRelay(new IPEndPoint(hosts.Gateway, RelayPortBase + r), new IPEndPoint(hosts.Address(right), RingPort), shape, seed: r + 1);
                    relays.Add(relay);
                    rightIp = hosts.Gateway.ToString();
                    rightPort = relay.Endpoint.Port;
                }
                var config = new RingConfig
                {
                    MasterIp = hosts.Address(0).ToString(), MasterPort = MasterPort, Port = RingPort,
                    RightIp = rightIp, RightPort = rightPort, Rank = r, WorldSize = n,
                };
                File.WriteAllText(Path.Combine(dir, $"ring_{r}.json"), config.ToJson());
            }
            for (int r = n - 1; r >= 0; r--)
            {
                var env = new Dictionary<string, string>
                {
                    ["RING_CONFIG"] = Path.Combine(dir, $"ring_{r}.json"),
                    ["ACTORRING_SECRET"] = TestSecrets.Cluster,
                };
                ranks.Add(new RankProcess(["serve", .. sharedArgs, .. r == 0 ? rank0Args : []], env, launcher: hosts.Exec(r)));
            }
            var master = ranks[^1];
            int code = await master.WaitAsync(Deadline);
            Assert.True(code == 0, $"rank 0 exited with {code}\nstderr:\n{master.Stderr}\n"
                + string.Join('\n', ranks.Take(n - 1).Select((w, i) => $"rank {n - 1 - i} stderr:\n{w.Stderr}")));
            var line = master.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Single();
            // The workers stop when rank 0 ends the one-shot run.
            foreach (var worker in ranks.Take(n - 1)) await worker.WaitAsync(TimeSpan.FromSeconds(30));
            if (shape is not null) Assert.All(relays, relay => Assert.True(relay.Bytes > 0, "the ring bypassed the relay"));
            return (JsonDocument.Parse(line).RootElement.Clone(), relays.Sum(relay => relay.Bytes));
        }
        finally
        {
            foreach (var rank in ranks) rank.Dispose();
            foreach (var relay in relays) relay.Dispose();
        }
    }

    private static int[] Ids(JsonElement result) => result.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [SkippableFact]
    public async Task Two_hosts_over_slow_jittery_lossy_links_generate_world_size_1s_tokens()
    {
        var (hosts, reason) = NamespaceCluster.TryCreate(2, "1gbit");
        Skip.If(hosts is null, reason);
        string dir = Directory.CreateTempSubdirectory("actorring-netns-").FullName;
        try
        {
            using (hosts)
            {
                // 1 ms each way, up to 2 ms of jitter, 0.5% of segments held for a 200 ms retransmission.
                var shape = new LinkShape(TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(2), 0.005);
                var (result, _) = await RunAsync(hosts!, shape, ["--prompt-ids", "1", "--max-tokens", "24", "--json"], ["--context", "512"], dir);
                Assert.Equal(2, result.GetProperty("world_size").GetInt32());
                Assert.Equal(PublishedGreedyIds()[..24], Ids(result));
                output.WriteLine($"2 hosts, links {shape}: {result.GetProperty("ms_per_token").GetDouble():0.00} ms/token");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
