using System.Text.RegularExpressions;

namespace ActorRing.Host.Tests;

/// <summary>A second process for a rank that is already served is refused by the coordinator, once, and exits.</summary>
public sealed class DuplicateRankTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_second_copy_of_a_worker_started_after_the_ring_formed_is_refused_with_one_line_on_each_side()
    {
        using var ring = new LoopbackRing(2);
        await ring.RunAsync(async () =>
        {
            var master = ring.Serve(0);
            var worker = ring.Serve(1);
            await master.WaitForLogAsync("cluster ready: 2 rank(s)", Deadline);

            var copy = ring.Serve(1);
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
        });
    }
}
