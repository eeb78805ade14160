using ActorRing.Actors.Client;
using Akka.TestKit.Xunit2;
using Xunit.Abstractions;

namespace ActorRing.Actors.Tests;

public sealed class CoordinatorClientSpecs : TestKit
{
    private static readonly TimeSpan T = TimeSpan.FromSeconds(10);

    public CoordinatorClientSpecs(ITestOutputHelper output) : base(TestConfig.Local, output: output) { }

    private static GenerateRequest Request(string id) => new(id, 0, [1], 0, new SamplingSpec(MaxTokens: 2));

    [Fact]
    public async Task Streams_tokens_until_the_result_and_ignores_other_requests_replies()
    {
        var coordinator = CreateTestProbe();
        var client = new CoordinatorClient(Sys, coordinator.Ref);
        var received = new List<IControlMessage>();
        var run = Task.Run(async () =>
        {
            await foreach (var m in client.GenerateAsync(Request("a"))) received.Add(m);
        });
        coordinator.ExpectMsg<GenerateRequest>(T);
        coordinator.Reply(new TokenGenerated("other", 0, 9));
        coordinator.Reply(new TokenGenerated("a", 0, 4));
        coordinator.Reply(new GenerationCompleted("a", [4], "length", 1, 1, 1, 0));
        await run.WaitAsync(T);
        Assert.Equal<IControlMessage>([new TokenGenerated("a", 0, 4)], received.Take(1));
        Assert.IsType<GenerationCompleted>(received[1]);
        Assert.Equal(2, received.Count);
    }

    [Fact]
    public async Task A_coordinator_that_stays_silent_ends_the_stream_with_an_error_and_a_cancel()
    {
        var coordinator = CreateTestProbe();
        var client = new CoordinatorClient(Sys, coordinator.Ref);
        var received = new List<IControlMessage>();
        var run = Task.Run(async () =>
        {
            await foreach (var m in client.GenerateAsync(Request("slow"), idleTimeout: TimeSpan.FromMilliseconds(300))) received.Add(m);
        });
        coordinator.ExpectMsg<GenerateRequest>(T);
        Assert.Equal(new CancelGeneration("slow"), coordinator.ExpectMsg<CancelGeneration>(T));
        await run.WaitAsync(T);
        var failed = Assert.IsType<GenerationFailed>(Assert.Single(received));
        Assert.StartsWith("no answer from the coordinator for 0 s", failed.Reason);
    }
}
