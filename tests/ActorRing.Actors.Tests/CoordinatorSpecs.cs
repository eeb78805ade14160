using System.Text;
using ActorRing.Actors.Security;
using ActorRing.Actors.Serving;
using ActorRing.Model.Batching;
using Akka.Actor;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using Xunit.Abstractions;

namespace ActorRing.Actors.Tests;

/// <summary>The coordinator against TestProbes standing in for every rank's ShardWorker, and (where a test needs
/// requests to run) a real step loop over the fake model on the coordinator's serving port.</summary>
public sealed class CoordinatorSpecs : TestKit, IDisposable
{
    private readonly ServingPort _port = new();
    private readonly CancellationTokenSource _loopStop = new();

    private static readonly byte[] Secret = Encoding.UTF8.GetBytes("test-secret-0123456789");
    private static readonly TimeSpan T = TimeSpan.FromSeconds(10); // an upper bound only; the machine may be busy
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(300);
    private const string Fingerprint = "fp-test";

    public CoordinatorSpecs(ITestOutputHelper output) : base(TestConfig.Local, output: output) { }

    private IActorRef StartCoordinator(int worldSize, TimeSpan? stepTimeout = null, TimeSpan? ringTimeout = null, TimeSpan? recoveryTimeout = null) =>
        Sys.ActorOf(Coordinator.Props(
            new CoordinatorSettings(worldSize, Secret, Fingerprint,
                StepTimeout: stepTimeout ?? TimeSpan.FromSeconds(5),
                RingTimeout: ringTimeout ?? TimeSpan.FromSeconds(5),
                LoadTimeout: TimeSpan.FromSeconds(5),
                RetryDelay: TimeSpan.FromMilliseconds(200)) { RecoveryTimeout = recoveryTimeout ?? TimeSpan.FromSeconds(30) },
            new GreedyPickers(), _port));

    /// <summary>Runs the step loop rank 0's worker would run, on the port, over the fake model at world size 1.</summary>
    private void RunLoop()
    {
        var comm = new FakeCollectives(0, 1);
        var engine = new FakeEngine(comm);
        var scheduler = new Scheduler(new SchedulerOptions(), new KvBlockPool(engine.KvBlocks, engine.KvBlockSize), engine.ContextLength);
        Task.Factory.StartNew(() => new StepLoop(engine, comm, scheduler, _port).Run(_loopStop.Token), TaskCreationOptions.LongRunning);
    }

    void IDisposable.Dispose()
    {
        _loopStop.Cancel();
        Dispose();
    }

    /// <summary>Runs the worker side of registration from <paramref name="probe"/> and returns the answer.</summary>
    private static object Join(TestProbe probe, IActorRef coordinator, int rank, int worldSize,
        byte[]? secret = null, string fingerprint = Fingerprint, int version = ControlProtocol.Version)
    {
        var clientNonce = RegistrationProof.NewNonce();
        probe.Send(coordinator, new Hello(rank, clientNonce));
        var challenge = probe.ExpectMsg<Challenge>(T);
        Assert.Equal(clientNonce, challenge.ClientNonce);
        var proof = RegistrationProof.Worker(secret ?? Secret, clientNonce, challenge.ServerNonce, rank, worldSize, version, fingerprint);
        probe.Send(coordinator, new Register(rank, worldSize, version, fingerprint, clientNonce, challenge.ServerNonce, proof));
        var answer = probe.ExpectMsg<object>(T);
        // The coordinator proves the secret only now, after the worker did, and over this registration.
        if (answer is Registered registered)
        {
            Assert.Equal(challenge.ServerNonce, registered.ServerNonce);
            Assert.True(RegistrationProof.Matches(
                RegistrationProof.Coordinator(Secret, clientNonce, challenge.ServerNonce, rank, worldSize), registered.CoordinatorProof));
        }
        return answer;
    }

    private TestProbe Worker(IActorRef coordinator, int rank, int worldSize)
    {
        var probe = CreateTestProbe($"rank{rank}");
        var answer = Join(probe, coordinator, rank, worldSize);
        Assert.Equal((rank, worldSize), (Assert.IsType<Registered>(answer).Rank, ((Registered)answer).WorldSize));
        return probe;
    }

    /// <summary>Registers every rank, forms the ring and loads: the cluster is then ready.</summary>
    private TestProbe[] ReadyCluster(IActorRef coordinator, int worldSize)
    {
        var workers = Enumerable.Range(0, worldSize).Select(r => Worker(coordinator, r, worldSize)).ToArray();
        FormAndLoad(coordinator, workers, loaded: false);
        return workers;
    }

    private static void FormAndLoad(IActorRef coordinator, TestProbe[] workers, bool loaded)
    {
        var forms = workers.Select(w => w.ExpectMsg<FormRing>(T)).ToArray();
        Assert.All(forms, f => Assert.Equal(forms[0].Generation, f.Generation));
        for (int r = 0; r < workers.Length; r++) workers[r].Reply(new RingReady(r, forms[r].Generation, loaded));
        if (loaded) return;
        for (int r = 0; r < workers.Length; r++)
        {
            var load = workers[r].ExpectMsg<LoadShard>(T);
            workers[r].Reply(new LoadProgress(r, 0.5));
            workers[r].Reply(new ShardLoaded(r, load.Generation));
        }
    }

    /// <summary>Every rank is told to start serving on the same ring generation.</summary>
    private static int ExpectServing(TestProbe[] workers)
    {
        var starts = workers.Select(w => w.ExpectMsg<StartServing>(T)).ToArray();
        Assert.All(starts, st => Assert.Equal(starts[0].Generation, st.Generation));
        return starts[0].Generation;
    }

    private static GenerateRequest Request(string id, int[] prompt, int maxTokens = 3, int[]? stop = null, int start = 0) =>
        new(id, 0, prompt, start, new SamplingSpec(MaxTokens: maxTokens, StopTokenIds: stop));

    [Fact]
    public void Waits_for_all_ranks_and_stashes_early_requests()
    {
        var coordinator = StartCoordinator(worldSize: 3);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("early", [1, 5]));

        var rank0 = Worker(coordinator, 0, 3);
        var rank2 = Worker(coordinator, 2, 3);
        // Two of three ranks: nothing may start, and the request must neither run nor fail.
        rank0.ExpectNoMsg(Quiet);
        client.ExpectNoMsg(TimeSpan.Zero);
        coordinator.Tell(GetClusterStatus.Instance, TestActor);
        var status = ExpectMsg<ClusterStatus>(T);
        Assert.False(status.Ready);
        Assert.Equal(2, status.RegisteredRanks);
        Assert.Contains("missing 1", status.Detail);

        var rank1 = Worker(coordinator, 1, 3);
        var workers = new[] { rank0, rank1, rank2 };
        FormAndLoad(coordinator, workers, loaded: false);

        // Every rank starts serving, and the request that waited in the serving port runs on the loop.
        ExpectServing(workers);
        RunLoop();
        Assert.Equal(new TokenGenerated("early", 0, 6), client.ExpectMsg<TokenGenerated>(T)); // the fake model: 5 + 1
        client.ExpectMsg<TokenGenerated>(T);
        client.ExpectMsg<TokenGenerated>(T);
        Assert.Equal(new[] { 6, 7, 8 }, client.ExpectMsg<GenerationCompleted>(T).TokenIds);
    }

    [Fact]
    public void Refuses_wrong_secret_wrong_world_size_wrong_model_wrong_version_and_duplicate_rank()
    {
        var coordinator = StartCoordinator(worldSize: 2);

        var wrongSecret = Assert.IsType<RegistrationRefused>(Join(CreateTestProbe(), coordinator, 1, 2, secret: Encoding.UTF8.GetBytes("guess")));
        Assert.Contains("wrong cluster secret", wrongSecret.Reason);

        var wrongSize = Assert.IsType<RegistrationRefused>(Join(CreateTestProbe(), coordinator, 1, 4));
        Assert.Equal("world_size 4 does not match the coordinator's 2; fix world_size in this rank's ring file", wrongSize.Reason);

        var wrongModel = Assert.IsType<RegistrationRefused>(Join(CreateTestProbe(), coordinator, 1, 2, fingerprint: "other"));
        Assert.Contains("model fingerprint other does not match rank 0's fp-test", wrongModel.Reason);

        var wrongVersion = Assert.IsType<RegistrationRefused>(Join(CreateTestProbe(), coordinator, 1, 2, version: 99));
        Assert.Contains("protocol version 99", wrongVersion.Reason);

        var first = Worker(coordinator, 1, 2);
        var duplicate = Assert.IsType<RegistrationRefused>(Join(CreateTestProbe("impostor"), coordinator, 1, 2));
        Assert.StartsWith("rank 1 is already registered by ", duplicate.Reason);
        Assert.True(duplicate.RankTaken);
        Assert.False(wrongSecret.RankTaken);

        // None of the refused attempts counts: with rank 0 the ring forms with exactly the first rank 1.
        var rank0 = Worker(coordinator, 0, 2);
        rank0.ExpectMsg<FormRing>(T);
        first.ExpectMsg<FormRing>(T);
    }

    [Fact]
    public void A_replayed_registration_is_refused()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var probe = CreateTestProbe();
        var nonce = RegistrationProof.NewNonce();
        probe.Send(coordinator, new Hello(1, nonce));
        var challenge = probe.ExpectMsg<Challenge>(T);
        var register = new Register(1, 2, ControlProtocol.Version, Fingerprint, nonce, challenge.ServerNonce,
            RegistrationProof.Worker(Secret, nonce, challenge.ServerNonce, 1, 2, ControlProtocol.Version, Fingerprint));
        probe.Send(coordinator, register);
        probe.ExpectMsg<Registered>(T);

        var attacker = CreateTestProbe();
        attacker.Send(coordinator, register with { Rank = 1 });
        Assert.Contains("without a valid challenge", attacker.ExpectMsg<RegistrationRefused>(T).Reason);
    }

    [Fact]
    public void A_worker_that_stops_closes_the_ring_and_serving_resumes_when_it_returns()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        ExpectServing(workers);

        Sys.Stop(workers[1].Ref);

        // The survivor is told to close its ring (which ends its step loop, and fails rank 0's running
        // requests with the ring's error), so nobody stays blocked in a collective.
        Assert.Matches(@"^rank 1 \(.*\) is gone \(connection lost or process stopped\)$", workers[0].ExpectMsg<CloseRing>(T).Reason);

        // A re-registered rank 1 re-forms the ring; once loaded, both ranks serve again on the new generation.
        var back = Worker(coordinator, 1, 2);
        FormAndLoad(coordinator, [workers[0], back], loaded: false);
        ExpectServing([workers[0], back]);
    }

    /// <summary>What a step loop that lost its ring leaves in the port: a scheduler holding one running request.</summary>
    private Scheduler SuspendOneRequest(RecordingClient client)
    {
        var scheduler = new Scheduler(new SchedulerOptions(), new KvBlockPool(64, 4), 64);
        Assert.Null(scheduler.Submit(new ServingRequest("r", [1, 2], new SamplingSpec(MaxTokens: 8), new GreedyPickers().Create(new SamplingSpec()), client)));
        var plan = scheduler.Plan(1)!;
        var logits = new float[16];
        logits[3] = 1;
        foreach (var e in scheduler.Complete(plan, new StepResult([logits], 1), 1)) e.Deliver();
        scheduler.Suspend();
        _port.Suspend(scheduler);
        return scheduler;
    }

    [Fact]
    public async Task Requests_suspended_by_a_lost_rank_wait_for_it_and_fail_naming_it_when_the_recovery_timeout_passes()
    {
        var coordinator = StartCoordinator(worldSize: 2, recoveryTimeout: TimeSpan.FromSeconds(1));
        var workers = ReadyCluster(coordinator, 2);
        ExpectServing(workers);
        var client = new RecordingClient();
        SuspendOneRequest(client);
        workers[1].Send(coordinator, new RankLeaving(1, "the process is stopping"));
        workers[0].ExpectMsg<CloseRing>(T);

        var status = await coordinator.Ask<ClusterStatus>(GetClusterStatus.Instance, T);
        Assert.False(status.Ready);
        Assert.Contains("the ring was lost (rank 1 is shutting down: the process is stopping); 1 request(s) in flight are suspended until it is back", status.Detail);
        Assert.IsType<TokenGenerated>(client.Next(T)); // the token of the step before the loss, nothing else yet
        Assert.False(client.Events.TryTake(out _, TimeSpan.FromMilliseconds(300)));

        var failed = Assert.IsType<GenerationFailed>(client.Next(T));
        Assert.Equal("rank 1 did not come back within the recovery timeout of 1 s (rank 1 is shutting down: the process is stopping)", failed.Reason);
        Assert.Equal(0, _port.Suspended);

        // The rank returns later: the cluster serves again, and a later loss suspends requests again.
        var back = CreateTestProbe("rank1-restarted");
        Assert.IsType<Registered>(Join(back, coordinator, 1, 2));
        FormAndLoad(coordinator, [workers[0], back], loaded: true);
        ExpectServing([workers[0], back]);
        var next = new RecordingClient();
        var kept = SuspendOneRequest(next);
        Assert.Same(kept, _port.TakeSuspended());
    }

    [Fact]
    public void A_rank_leaving_cleanly_closes_the_ring_with_its_reason()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        ExpectServing(workers);
        workers[1].Send(coordinator, new RankLeaving(1, "the process is stopping"));
        Assert.Equal("rank 1 is shutting down: the process is stopping", workers[0].ExpectMsg<CloseRing>(T).Reason);
    }

    [Fact]
    public void A_step_loop_that_stops_on_a_ring_error_gets_a_fresh_ring_without_reloading()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        int generation = ExpectServing(workers);
        workers[1].Send(coordinator, new ServingStopped(1, generation, "rank 1: received step plan 7 but expected 6"));
        var reason = workers[0].ExpectMsg<CloseRing>(T).Reason;
        Assert.Equal("rank 1's step loop stopped: rank 1: received step plan 7 but expected 6", reason);
        workers[1].ExpectMsg<CloseRing>(T);
        // Both ranks are still registered and loaded: the ring is re-formed and serving restarts, no LoadShard.
        FormAndLoad(coordinator, workers, loaded: true);
        Assert.True(ExpectServing(workers) > generation);
        // A report about an abandoned generation changes nothing.
        workers[1].Send(coordinator, new ServingStopped(1, generation, "late"));
        workers[0].ExpectNoMsg(Quiet);
    }

    [Fact]
    public void A_request_with_a_start_position_is_refused_since_requests_share_no_slot()
    {
        var coordinator = StartCoordinator(worldSize: 1);
        ReadyCluster(coordinator, 1);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("second", [5, 7], maxTokens: 1, start: 2));
        Assert.StartsWith("start position 2 is not supported", client.ExpectMsg<GenerationFailed>(T).Reason);
    }

    [Fact]
    public void Ring_formation_failure_is_retried_and_a_load_failure_is_reported_to_callers()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var rank0 = Worker(coordinator, 0, 2);
        var rank1 = Worker(coordinator, 1, 2);
        var g1 = rank0.ExpectMsg<FormRing>(T).Generation;
        rank1.ExpectMsg<FormRing>(T);
        rank1.Reply(new RingFailed(1, g1, "handshake with rank 0 timed out after 120 s"));
        rank0.ExpectMsg<CloseRing>(T);
        rank1.ExpectMsg<CloseRing>(T);
        var g2 = rank0.ExpectMsg<FormRing>(T).Generation;
        Assert.True(g2 > g1);
        rank1.ExpectMsg<FormRing>(T);
        rank0.Reply(new RingReady(0, g2, false));
        rank1.Reply(new RingReady(1, g2, false));
        rank0.ExpectMsg<LoadShard>(T);
        rank1.ExpectMsg<LoadShard>(T);

        var client = CreateTestProbe();
        client.Send(coordinator, Request("queued", [1]));
        rank1.Reply(new LoadFailed(1, g2, "30 attention heads cannot be split over 4 ranks"));
        // The request that waited for the cluster fails with the reason, and so does every later one.
        Assert.Equal("rank 1 could not load its shard: 30 attention heads cannot be split over 4 ranks",
            client.ExpectMsg<GenerationFailed>(T).Reason);
        client.Send(coordinator, Request("r", [1]));
        Assert.Equal("rank 1 could not load its shard: 30 attention heads cannot be split over 4 ranks",
            client.ExpectMsg<GenerationFailed>(T).Reason);
    }

    [Fact]
    public void Rejects_an_empty_prompt_and_invalid_sampling_without_touching_workers()
    {
        var coordinator = StartCoordinator(worldSize: 1);
        var workers = ReadyCluster(coordinator, 1);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("empty", []));
        Assert.Equal("the prompt is empty: give at least one token", client.ExpectMsg<GenerationFailed>(T).Reason);
        client.Send(coordinator, new GenerateRequest("neg", 0, [1], 0, new SamplingSpec(Temperature: -1)));
        Assert.Equal("invalid sampling options: temperature must be >= 0, got -1", client.ExpectMsg<GenerationFailed>(T).Reason);
        ExpectServing(workers);
        workers[0].ExpectNoMsg(Quiet);
        Assert.Equal((0, 0), _port.Load); // nothing reached the step loop
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_shutdown_or_rank_0_leaving_tells_every_rank_and_refuses_later_requests(bool rank0Leaves)
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        ExpectServing(workers);
        (IControlMessage ask, IClusterMessage order, string refusal) = rank0Leaves
            ? ((IControlMessage)new LeaveCluster("its process is stopping"), (IClusterMessage)new MasterLeaving("its process is stopping"), "rank 0 is stopping: its process is stopping")
            : (new ShutdownCluster("generate finished"), new Shutdown("generate finished"), "the cluster was shut down: generate finished");
        coordinator.Tell(ask, TestActor);
        Assert.Equal(order, workers[0].ExpectMsg<IClusterMessage>(T));
        Assert.Equal(order, workers[1].ExpectMsg<IClusterMessage>(T));
        Assert.False(ExpectMsg<ClusterStatus>(T).Ready);
        coordinator.Tell(Request("late", [1]), TestActor);
        Assert.Equal(refusal, ExpectMsg<GenerationFailed>(T).Reason);

        // A worker that dials in meanwhile is refused; while rank 0 is only leaving, that is no failure (the worker
        // dials on for rank 0's next start), and the refusal says so.
        var dialing = Assert.IsType<RegistrationRefused>(Join(CreateTestProbe(), coordinator, 1, 2));
        Assert.Equal($"the coordinator is not accepting ranks: {refusal}", dialing.Reason);
        Assert.Equal(rank0Leaves, dialing.RankZeroLeaving);
    }
}
