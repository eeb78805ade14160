using System.Text;
using ActorRing.Actors.Security;
using ActorRing.Actors.Serving;
using Akka.Actor;
using Akka.Event;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using Xunit.Abstractions;

namespace ActorRing.Actors.Tests;

/// <summary>A real ShardWorker (with its real RingPeer child) against a TestProbe coordinator, a fake ring
/// transport and a fake model engine.</summary>
public sealed class ShardWorkerSpecs : TestKit
{
    private static readonly byte[] Secret = Encoding.UTF8.GetBytes("test-secret-0123456789");
    private static readonly TimeSpan T = TimeSpan.FromSeconds(10); // an upper bound only; the machine may be busy

    public ShardWorkerSpecs(ITestOutputHelper output) : base(TestConfig.Local, output: output) { }

    private sealed record Rig(IActorRef Worker, TestProbe Coordinator, FakeRingConnector Ring, FakeEngineFactory Engines, List<string> Shutdowns)
    {
        public ServingPort Port { get; init; } = new();
    }

    /// <summary>Queues a request for rank 0's step loop, as the coordinator's request side does.</summary>
    private static RecordingClient Submit(Rig rig, string id, int[] prompt, int maxTokens)
    {
        var client = new RecordingClient();
        rig.Port.Submit(new ServingRequest(id, prompt, new SamplingSpec(MaxTokens: maxTokens), new GreedyPickers().Create(new SamplingSpec()), client));
        return client;
    }

    private Rig Start(int rank = 0, int worldSize = 2, FakeEngineFactory? engines = null)
    {
        var coordinator = CreateTestProbe("coordinator");
        var ring = new FakeRingConnector(rank, worldSize);
        engines ??= new FakeEngineFactory();
        var shutdowns = new List<string>();
        var settings = new ShardWorkerSettings(rank, worldSize, Secret, coordinator.Ref.Path.ToString(),
            TimeSpan.FromMilliseconds(200), reason => { lock (shutdowns) shutdowns.Add(reason); });
        var port = new ServingPort();
        var worker = Sys.ActorOf(ShardWorker.Props(settings, engines, RingPeer.Props(ring),
            rank == 0 ? new RankServing(port, new SchedulerOptions()) : null), $"worker-{rank}");
        return new Rig(worker, coordinator, ring, engines, shutdowns) { Port = port };
    }

    /// <summary>Plays the coordinator's side of registration and checks the worker's proof.</summary>
    private static void Register(Rig rig, int rank = 0, int worldSize = 2)
    {
        var hello = rig.Coordinator.ExpectMsg<Hello>(T);
        Assert.Equal(rank, hello.Rank);
        var serverNonce = RegistrationProof.NewNonce();
        // The challenge carries no proof: the worker proves the secret before it learns anything.
        rig.Coordinator.Reply(new Challenge(hello.ClientNonce, serverNonce));
        var register = rig.Coordinator.FishForMessage<Register>(_ => true, T);
        Assert.Equal((rank, worldSize, ControlProtocol.Version, "fp-test", hello.ClientNonce, serverNonce),
            (register.Rank, register.WorldSize, register.ProtocolVersion, register.ModelFingerprint, register.ClientNonce, register.ServerNonce));
        Assert.True(RegistrationProof.Matches(RegistrationProof.Worker(Secret, register), register.Proof));
        rig.Coordinator.Reply(new Registered(rank, worldSize, serverNonce,
            RegistrationProof.Coordinator(Secret, hello.ClientNonce, serverNonce, rank, worldSize)));
    }

    private static void FormAndLoad(Rig rig, int rank = 0)
    {
        rig.Coordinator.Send(rig.Worker, new FormRing(1));
        Assert.Equal(new RingReady(rank, 1, false), rig.Coordinator.FishForMessage<RingReady>(_ => true, T));
        rig.Coordinator.Send(rig.Worker, new LoadShard(1));
        var progress = new List<double>();
        rig.Coordinator.FishForMessage(m =>
        {
            if (m is LoadProgress p) progress.Add(p.Fraction);
            return m is ShardLoaded;
        }, T);
        Assert.Equal(new[] { 0.25, 0.5, 0.75, 1.0 }, progress);
    }

    [Fact]
    public void Registers_with_a_secret_proof_and_keeps_retrying_until_the_coordinator_answers()
    {
        var rig = Start();
        // No answer to the first Hello: the worker dials again on its retry interval.
        var first = rig.Coordinator.ExpectMsg<Hello>(T);
        var second = rig.Coordinator.ExpectMsg<Hello>(T);
        Assert.NotEqual(first.ClientNonce, second.ClientNonce);
        Register(rig);
    }

    [Fact]
    public void Does_not_register_with_a_coordinator_that_cannot_prove_the_secret()
    {
        var rig = Start();
        var hello = rig.Coordinator.ExpectMsg<Hello>(T);
        var serverNonce = RegistrationProof.NewNonce();
        rig.Coordinator.Reply(new Challenge(hello.ClientNonce, serverNonce));
        rig.Coordinator.FishForMessage<Register>(_ => true, T);
        rig.Coordinator.Reply(new Registered(0, 2, serverNonce,
            RegistrationProof.Coordinator(Encoding.UTF8.GetBytes("a-wrong-secret-0123456789"), hello.ClientNonce, serverNonce, 0, 2)));
        // It says why (so rank 0 can log it), does not take orders from that peer, and keeps dialing.
        var refused = rig.Coordinator.FishForMessage<CoordinatorRefused>(_ => true, T);
        Assert.Equal(0, refused.Rank);
        Assert.EndsWith("failed to prove the cluster secret; set the same ACTORRING_SECRET on every rank", refused.Reason);
        rig.Coordinator.ExpectMsg<Hello>(T);
        rig.Coordinator.ExpectMsg<Hello>(T);
    }

    [Fact]
    public void A_process_whose_rank_is_held_by_another_gives_up_once_after_the_grace_period()
    {
        var coordinator = CreateTestProbe("coordinator");
        var refusals = new List<string>();
        var settings = new ShardWorkerSettings(1, 2, Secret, coordinator.Ref.Path.ToString(), TimeSpan.FromMilliseconds(100),
            OnRefused: reason => { lock (refusals) refusals.Add(reason); }, RankTakenGrace: TimeSpan.FromMilliseconds(500));
        Sys.ActorOf(ShardWorker.Props(settings, new FakeEngineFactory(), RingPeer.Props(new FakeRingConnector(1, 2))), "worker-taken");
        const string taken = "rank 1 is already registered by akka://test/user/other";
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // Within the grace period the refusal may come from a holder that has just died: the worker retries.
        TimeSpan gaveUpAfter;
        while (true)
        {
            coordinator.ExpectMsg<Hello>(T);
            coordinator.Reply(new RegistrationRefused(1, taken, RankTaken: true));
            var elapsed = clock.Elapsed;
            AwaitCondition(() => { lock (refusals) return refusals.Count > 0 || coordinator.HasMessages; }, T);
            lock (refusals)
            {
                if (refusals.Count == 0) continue;
            }
            gaveUpAfter = elapsed;
            break;
        }
        Assert.True(gaveUpAfter >= TimeSpan.FromMilliseconds(500), $"gave up after {gaveUpAfter.TotalMilliseconds:0} ms, before the grace period");
        lock (refusals) Assert.Equal($"rank 1: the coordinator refused this process: {taken}; stopping (another process serves this rank)", Assert.Single(refusals));
        // It has stopped dialing.
        coordinator.ExpectNoMsg(TimeSpan.FromMilliseconds(600));
    }

    [Fact]
    public void A_refusal_while_rank_0_is_leaving_is_no_error_and_the_worker_dials_on()
    {
        var coordinator = CreateTestProbe("coordinator");
        var settings = new ShardWorkerSettings(1, 2, Secret, coordinator.Ref.Path.ToString(), TimeSpan.FromMilliseconds(100));
        Sys.ActorOf(ShardWorker.Props(settings, new FakeEngineFactory(), RingPeer.Props(new FakeRingConnector(1, 2))), "worker-rank-0-leaving");
        const string leaving = "the coordinator is not accepting ranks: rank 0 is stopping: its process is stopping";
        EventFilter.Error(contains: "refused").Expect(0, () =>
            EventFilter.Info(contains: $"rank 1: the coordinator refused rank 1: {leaving}; dialing on for rank 0's next start").ExpectOne(() =>
            {
                coordinator.ExpectMsg<Hello>(T);
                coordinator.Reply(new RegistrationRefused(1, leaving, RankZeroLeaving: true));
            }));
        // The same refusal for any other reason is an error.
        EventFilter.Error(contains: "rank 1: the coordinator refused rank 1: the coordinator is not accepting ranks: loading failed").ExpectOne(() =>
        {
            coordinator.ExpectMsg<Hello>(T);
            coordinator.Reply(new RegistrationRefused(1, "the coordinator is not accepting ranks: loading failed"));
        });
        coordinator.ExpectMsg<Hello>(T); // it dials on
    }

    [Fact]
    public void Forms_the_ring_loads_and_serves_on_the_compute_thread()
    {
        var rig = Start();
        Register(rig);
        FormAndLoad(rig);
        Assert.Equal("actorring-compute-rank0", rig.Engines.LoadThread);

        rig.Coordinator.Send(rig.Worker, new StartServing(1));
        var client = Submit(rig, "r", [1, 4], maxTokens: 2);
        var done = Assert.IsType<GenerationCompleted>(client.UntilDone(T)[^1]);
        Assert.Equal(new[] { 5, 6 }, done.TokenIds); // the fake model predicts last token + 1

        var engine = rig.Engines.Engine!;
        List<(ActorRing.Model.Batching.StepPlan Plan, string? Thread)> calls;
        lock (engine.Calls) calls = engine.Calls.ToList();
        Assert.Equal(new[] { (1L, 0, "actorring-compute-rank0"), (2L, 2, "actorring-compute-rank0") },
            calls.Select(c => (c.Plan.Step, c.Plan.Sequences[0].StartPosition, c.Thread!)));
        Assert.Equal(2, rig.Ring.Last.AllReduceCalls); // collectives went straight to the communicator
    }

    [Fact]
    public void Its_mailbox_stays_responsive_while_a_step_is_running()
    {
        using var gate = new ManualResetEventSlim(false);
        var rig = Start(engines: new FakeEngineFactory { StepGate = gate });
        Register(rig);
        FormAndLoad(rig);
        rig.Coordinator.Send(rig.Worker, new StartServing(1));
        var client = Submit(rig, "r", [1], maxTokens: 1);
        // The step is blocked on the gate; the worker must still handle control messages.
        rig.Coordinator.Send(rig.Worker, new LoadShard(1));
        Assert.Equal(new ShardLoaded(0, 1), rig.Coordinator.FishForMessage<ShardLoaded>(_ => true, T));
        gate.Set();
        Assert.IsType<GenerationCompleted>(client.UntilDone(T)[^1]);
    }

    [Fact]
    public void A_collective_failure_stops_the_loop_closes_the_ring_and_is_reported_by_the_ring_peer()
    {
        var rig = Start(rank: 1);
        Register(rig, rank: 1);
        FormAndLoad(rig, rank: 1);
        var comm = rig.Ring.Last;
        rig.Coordinator.Send(rig.Worker, new StartServing(1));
        comm.SendPlan(new ActorRing.Model.Batching.StepPlan(1, [new ActorRing.Model.Batching.SequenceStep(0, 0, [1], [0], true)]));
        AwaitCondition(() => { lock (rig.Engines.Engine!.Calls) return rig.Engines.Engine.Calls.Count == 1; }, T);
        comm.FailWith = "broadcast #7: left neighbour rank 0 timed out after 30 s";
        comm.Incoming.Add(new int[1]); // wakes the waiting receive, which then finds the ring failed

        // The worker and its ring peer report independently, so the two messages may come in either order.
        var reports = rig.Coordinator.ReceiveN(2, T);
        Assert.Contains(new ServingStopped(1, 1, "broadcast #7: left neighbour rank 0 timed out after 30 s"), reports);
        Assert.Contains(new RingFailed(1, 1, "broadcast #7: left neighbour rank 0 timed out after 30 s"), reports);
        AwaitCondition(() => comm.Disposed, T);

        // Re-forming the ring keeps the loaded shard: the reply says so and no reload is needed.
        rig.Coordinator.Send(rig.Worker, new FormRing(2));
        Assert.Equal(new RingReady(1, 2, true), rig.Coordinator.FishForMessage<RingReady>(_ => true, T));
    }

    [Fact]
    public void A_load_still_running_when_the_ring_is_re_formed_answers_the_newest_load_order()
    {
        using var gate = new ManualResetEventSlim(false);
        var engines = new BlockingLoadFactory(gate);
        var coordinator = CreateTestProbe("coordinator");
        var settings = new ShardWorkerSettings(0, 1, Secret, coordinator.Ref.Path.ToString(), TimeSpan.FromMilliseconds(200));
        var worker = Sys.ActorOf(ShardWorker.Props(settings, engines, RingPeer.Props(new FakeRingConnector(0, 1)),
            new RankServing(new ServingPort(), new SchedulerOptions())));
        var rig = new Rig(worker, coordinator, new FakeRingConnector(0, 1), new FakeEngineFactory(), []);
        Register(rig, rank: 0, worldSize: 1);
        coordinator.Send(worker, new FormRing(1));
        coordinator.FishForMessage<RingReady>(_ => true, T);
        coordinator.Send(worker, new LoadShard(1));
        // The ring fails and is re-formed while the (slow) load is still running.
        coordinator.Send(worker, new FormRing(3));
        Assert.Equal(new RingReady(0, 3, false), coordinator.FishForMessage<RingReady>(_ => true, T));
        coordinator.Send(worker, new LoadShard(3));
        gate.Set();
        Assert.Equal(new ShardLoaded(0, 3), coordinator.FishForMessage<ShardLoaded>(_ => true, T));
    }

    private sealed class BlockingLoadFactory(ManualResetEventSlim gate) : ActorRing.Actors.Engine.IShardEngineFactory
    {
        public string ModelFingerprint => "fp-test";

        public ActorRing.Actors.Engine.IShardEngine Load(ActorRing.Transport.ICollectives comm, IProgress<double> progress, CancellationToken cancellationToken)
        {
            if (!gate.Wait(TimeSpan.FromSeconds(10))) throw new TimeoutException("test gate never opened");
            return new FakeEngine(comm);
        }
    }

    [Fact]
    public void A_load_failure_is_reported_with_the_models_message()
    {
        var rig = Start(engines: new FakeEngineFactory { FailWith = "30 attention heads cannot be split over 4 ranks" });
        Register(rig);
        rig.Coordinator.Send(rig.Worker, new FormRing(1));
        rig.Coordinator.FishForMessage<RingReady>(_ => true, T);
        rig.Coordinator.Send(rig.Worker, new LoadShard(1));
        Assert.Equal(new LoadFailed(0, 1, "30 attention heads cannot be split over 4 ranks"),
            rig.Coordinator.FishForMessage<LoadFailed>(_ => true, T));
    }

    [Fact]
    public void Ignores_control_messages_from_anyone_but_its_coordinator()
    {
        var rig = Start();
        Register(rig);
        var stranger = CreateTestProbe();
        stranger.Send(rig.Worker, new FormRing(1));
        stranger.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        Assert.Empty(rig.Ring.Made);
    }

    [Fact]
    public void Closes_its_ring_and_dials_again_when_the_coordinator_dies()
    {
        var rig = Start();
        Register(rig);
        rig.Coordinator.Send(rig.Worker, new FormRing(1));
        rig.Coordinator.FishForMessage<RingReady>(_ => true, T);
        var comm = rig.Ring.Last;

        // With rank 0 gone, the worker's Hellos to the coordinator path land in dead letters until it returns.
        Sys.EventStream.Subscribe(TestActor, typeof(DeadLetter));
        Sys.Stop(rig.Coordinator.Ref);
        AwaitCondition(() => comm.Disposed, T);
        FishForMessage(m => m is DeadLetter { Message: Hello { Rank: 0 } }, T);
    }

    [Fact]
    public void A_cluster_shutdown_from_the_coordinator_stops_the_process_through_the_host()
    {
        var rig = Start();
        Register(rig);
        rig.Coordinator.Send(rig.Worker, new Shutdown("generate finished"));
        AwaitCondition(() => { lock (rig.Shutdowns) return rig.Shutdowns.SequenceEqual(["generate finished"]); }, T);
    }

    [Fact]
    public void Rank_0_leaving_is_acknowledged_and_the_worker_closes_its_ring_and_dials_again_keeping_its_process()
    {
        var rig = Start(rank: 1);
        Register(rig, rank: 1);
        FormAndLoad(rig, rank: 1);
        var comm = rig.Ring.Last;
        rig.Coordinator.Send(rig.Worker, new MasterLeaving("its process is stopping"));
        Assert.Equal(new MasterLeavingNoted(1), rig.Coordinator.FishForMessage<MasterLeavingNoted>(_ => true, T));
        AwaitCondition(() => comm.Disposed, T);
        // Back to dialing: a new Hello, and the host was not asked to stop.
        Assert.Equal(1, rig.Coordinator.FishForMessage<Hello>(_ => true, T).Rank);
        lock (rig.Shutdowns) Assert.Empty(rig.Shutdowns);
    }

    [Fact]
    public void Stopping_the_worker_tells_the_coordinator_and_closes_the_ring()
    {
        var rig = Start(rank: 1);
        Register(rig, rank: 1);
        rig.Coordinator.Send(rig.Worker, new FormRing(1));
        rig.Coordinator.FishForMessage<RingReady>(_ => true, T);
        Sys.Stop(rig.Worker);
        Assert.Equal(new RankLeaving(1, "the process is stopping"), rig.Coordinator.FishForMessage<RankLeaving>(_ => true, T));
        Assert.True(rig.Ring.Last.Disposed);
    }
}
