using System.Text.RegularExpressions;
using ActorRing.Transport;

namespace ActorRing.Host.Tests;

/// <summary>A second process for a rank that is already served is refused by the coordinator, once, and exits.</summary>
public sealed class DuplicateRankTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_second_copy_of_a_worker_started_after_the_ring_formed_is_refused_with_one_line_on_each_side()
    {
        var dir = Directory.CreateTempSubdirectory("actorring-duplicate-").FullName;
        var configs = RingConfig.ForLoopback(2);
        for (int r = 0; r < 2; r++) File.WriteAllText(Path.Combine(dir, $"ring_{r}.json"), configs[r].ToJson());
        Dictionary<string, string> Env(int rank) => new()
        {
            ["RING_CONFIG"] = Path.Combine(dir, $"ring_{rank}.json"),
            ["ACTORRING_SECRET"] = TestSecrets.Cluster,
        };
        try
        {
            using var master = new RankProcess(["serve"], Env(0));
            using var worker = new RankProcess(["serve"], Env(1));
            await master.WaitForLogAsync("cluster ready: 2 rank(s)", Deadline);

            using var copy = new RankProcess(["serve"], Env(1));
            Assert.Equal(2, await copy.WaitAsync(Deadline));
            const string taken = "rank 1 is already registered by akka.tcp://actorring@127.0.0.1:";
            Assert.Single(Regex.Matches(copy.Stderr, Regex.Escape(taken)));
            Assert.Contains("stopping (another process serves this rank)", copy.Stderr);
            // Rank 0 says it once, though the copy asked every few seconds until it gave up.
            Assert.Single(Regex.Matches(master.Stderr, Regex.Escape("refused registration of rank 1 from ")));
            Assert.Contains(taken, master.Stderr);
            // The rank that was there first is undisturbed.
            Assert.False(worker.HasExited);
            Assert.DoesNotContain("is gone", master.Stderr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
