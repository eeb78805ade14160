using System.Text;
using ActorRing.Actors.Client;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using Xunit.Abstractions;

namespace ActorRing.Actors.Tests;

/// <summary>The real coordinator with real workers and ring peers in one actor system; fakes only for the
/// transport and the model. Checks how the three actors work together, which probes cannot show.</summary>
public sealed class InProcessClusterSpecs : TestKit
{
    private static readonly byte[] Secret = Encoding.UTF8.GetBytes("in-process");
    private static readonly TimeSpan T = TimeSpan.FromSeconds(10);

    public InProcessClusterSpecs(ITestOutputHelper output) : base(TestConfig.Local, output: output) { }

    [Fact]
    public async Task A_failed_ring_bootstrap_is_retried_at_once_not_after_the_formation_timeout()
    {
        var settings = CoordinatorSettings.Create(2, Secret, "fp-test") with
        {
            RingTimeout = TimeSpan.FromMinutes(5), // only the ring peer's report can make this fast
            RetryDelay = TimeSpan.FromMilliseconds(100),
        };
        var port = new ActorRing.Actors.Serving.ServingPort();
        var coordinator = Sys.ActorOf(Coordinator.Props(settings, new GreedyPickers(), port), "coordinator");
        var hub = new FakeRingHub();
        var flaky = new FakeRingConnector(1, 2, hub) { FailTimes = 1 };
        for (int rank = 0; rank < 2; rank++)
        {
            var ws = new ShardWorkerSettings(rank, 2, Secret, coordinator.Path.ToString(), TimeSpan.FromMilliseconds(100));
            var ring = rank == 1 ? flaky : new FakeRingConnector(0, 2, hub);
            Sys.ActorOf(ShardWorker.Props(ws, new FakeEngineFactory(), RingPeer.Props(ring),
                rank == 0 ? new RankServing(port, new ActorRing.Actors.Serving.SchedulerOptions()) : null), $"worker-{rank}");
        }
        var client = new CoordinatorClient(Sys, coordinator);
        await client.WaitReadyAsync(T, null, CancellationToken.None);
        Assert.Equal(-1, flaky.FailTimes); // one failed attempt, then success

        var ids = new List<int>();
        await foreach (var m in client.GenerateAsync(new GenerateRequest("r", 0, [2], 0, new SamplingSpec(MaxTokens: 3))))
            if (m is TokenGenerated t) ids.Add(t.TokenId);
        Assert.Equal(new[] { 3, 4, 5 }, ids);
    }
}
