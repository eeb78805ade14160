using System.Net;
using System.Net.Sockets;
using System.Text;
using ActorRing.Actors.Client;
using ActorRing.Actors.Hosting;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorRing.Actors.Tests;

/// <summary>
/// Two ranks as two generic hosts with real Akka.Remote on loopback, wired by the same Akka.Hosting extensions
/// and HOCON as <c>actorring serve</c>; only the model and the ring are fakes. This exercises addressing
/// (the worker dials rank 0's public address), the JSON serializer over the wire, and registration proofs.
/// </summary>
public sealed class RemoteClusterSpecs
{
    private static readonly byte[] Secret = Encoding.UTF8.GetBytes("remote-secret");
    private readonly FakeRingHub _hub = new();

    private static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    private IHost Rank(int rank, int worldSize, int masterPort, byte[] secret, string fingerprint = "fp-test")
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        var coordinatorPath = rank == 0
            ? $"/user/{ControlProtocol.CoordinatorName}"
            : ActorRingAkkaExtensions.CoordinatorPath("127.0.0.1", masterPort);
        var options = new RankActorsOptions(
            new ShardWorkerSettings(rank, worldSize, secret, coordinatorPath, TimeSpan.FromMilliseconds(300)),
            new FakeEngineFactory(fingerprint),
            new FakeRingConnector(rank, worldSize, _hub),
            rank == 0 ? CoordinatorSettings.Create(worldSize, secret, "fp-test") : null,
            rank == 0 ? new GreedyPickers() : null);
        builder.Services.AddAkka(ControlProtocol.SystemName, (akka, sp) => akka
            .AddActorRingHocon()
            .AddActorRingLogging(sp.GetRequiredService<ILoggerFactory>())
            .AddActorRingRemoting(new RemoteEndpoint("127.0.0.1", rank == 0 ? masterPort : 0, "127.0.0.1"))
            .AddActorRingRank(options));
        return builder.Build();
    }

    [Fact]
    public async Task A_worker_started_before_rank_0_registers_over_the_network_and_a_request_streams_back()
    {
        int masterPort = FreePort();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var worker = Rank(1, 2, masterPort, Secret);
        await worker.StartAsync(cts.Token);
        await Task.Delay(500, cts.Token); // the worker dials a coordinator that does not exist yet
        using var master = Rank(0, 2, masterPort, Secret);
        await master.StartAsync(cts.Token);
        try
        {
            // The HOCON added through Akka.Hosting binds every control message to our serializer (not Newtonsoft).
            var system = master.Services.GetRequiredService<Akka.Actor.ActorSystem>();
            Assert.IsType<ActorRing.Actors.Serialization.ControlMessageSerializer>(system.Serialization.FindSerializerForType(typeof(StartServing)));
            Assert.IsType<ActorRing.Actors.Serialization.ControlMessageSerializer>(system.Serialization.FindSerializerForType(typeof(Register)));
            var registry = master.Services.GetRequiredService<ActorRegistry>();
            var client = new CoordinatorClient(master.Services.GetRequiredService<Akka.Actor.ActorSystem>(), registry.Get<CoordinatorActor>());
            await client.WaitReadyAsync(TimeSpan.FromSeconds(30), null, cts.Token);

            // Another process that reaches master_port cannot use the client API (only registration is open).
            var workerSystem = worker.Services.GetRequiredService<Akka.Actor.ActorSystem>();
            var remoteCoordinator = workerSystem.ActorSelection(ActorRingAkkaExtensions.CoordinatorPath("127.0.0.1", masterPort));
            var refused = await remoteCoordinator.Ask<GenerationFailed>(
                new GenerateRequest("intruder", 0, [1], 0, new SamplingSpec(MaxTokens: 1)), TimeSpan.FromSeconds(10));
            Assert.Equal("client requests are accepted only from inside rank 0's process", refused.Reason);

            var events = new List<IControlMessage>();
            await foreach (var e in client.GenerateAsync(new GenerateRequest("r1", 0, [1, 3], 0, new SamplingSpec(MaxTokens: 4)), cts.Token))
                events.Add(e);

            // The fake model predicts last token + 1 (mod 16); rank 1 followed rank 0's plans.
            Assert.Equal(new[] { 4, 5, 6, 7 }, events.OfType<TokenGenerated>().Select(t => t.TokenId));
            var done = Assert.IsType<GenerationCompleted>(events[^1]);
            Assert.Equal(new[] { 4, 5, 6, 7 }, done.TokenIds);
            Assert.Equal(5, done.PositionAfter);
        }
        finally
        {
            await master.StopAsync(CancellationToken.None);
            await worker.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task A_worker_with_the_wrong_secret_never_joins_and_a_stopping_worker_fails_the_request_fast()
    {
        int masterPort = FreePort();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var master = Rank(0, 2, masterPort, Secret);
        using var impostor = Rank(1, 2, masterPort, Encoding.UTF8.GetBytes("guess"));
        await master.StartAsync(cts.Token);
        await impostor.StartAsync(cts.Token);
        var client = new CoordinatorClient(master.Services.GetRequiredService<Akka.Actor.ActorSystem>(),
            master.Services.GetRequiredService<ActorRegistry>().Get<CoordinatorActor>());
        try
        {
            await Task.Delay(1500, cts.Token);
            var status = await client.StatusAsync(TimeSpan.FromSeconds(5), cts.Token);
            Assert.Equal((1, false), (status.RegisteredRanks, status.Ready));
            await impostor.StopAsync(cts.Token);

            using var worker = Rank(1, 2, masterPort, Secret);
            await worker.StartAsync(cts.Token);
            await client.WaitReadyAsync(TimeSpan.FromSeconds(30), null, cts.Token);
            await worker.StopAsync(cts.Token);

            // The stopped rank said goodbye: the next request is not run on a half cluster; it waits, so
            // status reports the missing rank.
            await Task.Delay(500, cts.Token);
            status = await client.StatusAsync(TimeSpan.FromSeconds(5), cts.Token);
            Assert.False(status.Ready);
            Assert.Contains("missing 1", status.Detail);
        }
        finally
        {
            await master.StopAsync(CancellationToken.None);
        }
    }

    /// <summary>
    /// Akka.Remote quarantines a peer for good when the two systems' system-message sequence numbers fall out of
    /// step (seen once in CI: a worker resumed after SIGSTOP while rank 0 had dropped its receive buffers, so rank
    /// 0 asked again for messages the worker no longer held, and the worker quarantined rank 0: "Association ...
    /// irrecoverably failed. Quarantining address"). Neither process can then talk to the other until one restarts.
    /// The HOCON keeps a quarantine marker for seconds, not days, so the worker registers again on its own.
    /// </summary>
    [Fact]
    public async Task A_worker_that_quarantined_rank_0_registers_again_within_seconds_and_the_next_request_streams_back()
    {
        int masterPort = FreePort();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var master = Rank(0, 2, masterPort, Secret);
        using var worker = Rank(1, 2, masterPort, Secret);
        await master.StartAsync(cts.Token);
        await worker.StartAsync(cts.Token);
        var masterSystem = master.Services.GetRequiredService<Akka.Actor.ActorSystem>();
        var client = new CoordinatorClient(masterSystem, master.Services.GetRequiredService<ActorRegistry>().Get<CoordinatorActor>());
        async Task<int[]> Generate(string id)
        {
            var events = new List<IControlMessage>();
            await foreach (var e in client.GenerateAsync(new GenerateRequest(id, 0, [1, 3], 0, new SamplingSpec(MaxTokens: 4)), cts.Token, TimeSpan.FromSeconds(20)))
                events.Add(e);
            return events[^1] is GenerationCompleted done ? done.TokenIds.ToArray() : [];
        }
        try
        {
            await client.WaitReadyAsync(TimeSpan.FromSeconds(30), null, cts.Token);
            Assert.Equal(new[] { 4, 5, 6, 7 }, await Generate("before"));

            var workerSystem = worker.Services.GetRequiredService<Akka.Actor.ActorSystem>();
            var rank0 = new Address("akka.tcp", ControlProtocol.SystemName, "127.0.0.1", masterPort);
            ((Akka.Remote.IRemoteActorRefProvider)((ExtendedActorSystem)workerSystem).Provider).Quarantine(rank0, Akka.Remote.AddressUidExtension.Uid(masterSystem));

            // Rank 0 loses the worker (its association is refused), the worker loses rank 0; with a quarantine
            // kept for days no request would ever run again. Retried until the ring is back.
            var started = System.Diagnostics.Stopwatch.StartNew();
            int[] after = [];
            while (after.Length == 0 && started.Elapsed < TimeSpan.FromSeconds(45))
            {
                try
                {
                    await Task.Delay(1000, cts.Token);
                    await client.WaitReadyAsync(TimeSpan.FromSeconds(5), null, cts.Token);
                    after = await Generate($"after-{started.ElapsedMilliseconds}");
                }
                catch (TimeoutException)
                {
                    // not back yet
                }
            }
            Assert.True(after.Length > 0, $"no request completed within {started.Elapsed.TotalSeconds:0} s of the quarantine");
            Assert.Equal(new[] { 4, 5, 6, 7 }, after);
        }
        finally
        {
            await master.StopAsync(CancellationToken.None);
            await worker.StopAsync(CancellationToken.None);
        }
    }
}
