using System.Text;
using ActorRing.Actors.Security;
using Akka.Actor;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using Xunit.Abstractions;

namespace ActorRing.Actors.Tests;

/// <summary>The coordinator against TestProbes standing in for every rank's ShardWorker.</summary>
public sealed class CoordinatorSpecs : TestKit
{
    private static readonly byte[] Secret = Encoding.UTF8.GetBytes("test-secret-0123456789");
    private static readonly TimeSpan T = TimeSpan.FromSeconds(10); // an upper bound only; the machine may be busy
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(300);
    private const string Fingerprint = "fp-test";

    public CoordinatorSpecs(ITestOutputHelper output) : base(TestConfig.Local, output: output) { }

    private IActorRef StartCoordinator(int worldSize, TimeSpan? stepTimeout = null, TimeSpan? ringTimeout = null) =>
        Sys.ActorOf(Coordinator.Props(
            new CoordinatorSettings(worldSize, Secret, Fingerprint,
                StepTimeout: stepTimeout ?? TimeSpan.FromSeconds(5),
                RingTimeout: ringTimeout ?? TimeSpan.FromSeconds(5),
                LoadTimeout: TimeSpan.FromSeconds(5),
                RetryDelay: TimeSpan.FromMilliseconds(200)),
            new GreedyPickers()));

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

    /// <summary>Answers one step on every rank the way real workers do (rank 0 with logits).</summary>
    private static RunStep CompleteStep(TestProbe[] workers, int nextToken)
    {
        RunStep? step = null;
        for (int r = 0; r < workers.Length; r++)
        {
            var s = workers[r].ExpectMsg<RunStep>(T);
            step ??= s;
            Assert.Equal(step, s with { Tokens = step.Tokens });
            Assert.Equal(step.Tokens, s.Tokens);
            float[]? logits = null;
            if (r == 0)
            {
                logits = new float[8];
                logits[nextToken] = 5;
            }
            workers[r].Reply(new StepCompleted(s.RequestId, s.Step, r, logits, 1.0));
        }
        return step!;
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

        // The stashed request now runs: prefill of the whole prompt on every rank.
        var prefill = CompleteStep(workers, nextToken: 6);
        Assert.Equal(new[] { 1, 5 }, prefill.Tokens);
        Assert.Equal(0, prefill.StartPosition);
        Assert.Equal(new TokenGenerated("early", 0, 6), client.ExpectMsg<TokenGenerated>(T));
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
    public void Sequences_prefill_then_decode_steps_in_order_and_streams_tokens()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("r1", [1, 2, 3], maxTokens: 3));

        // Step 0 is the prefill. Step 1 must not start until every rank finished step 0.
        var s0 = workers[0].ExpectMsg<RunStep>(T);
        workers[1].ExpectMsg<RunStep>(T);
        Assert.Equal(new[] { 1, 2, 3 }, s0.Tokens);
        workers[0].Reply(new StepCompleted("r1", 0, 0, Logits(4), 1));
        workers[0].ExpectNoMsg(Quiet);
        client.ExpectNoMsg(TimeSpan.Zero);
        workers[1].Reply(new StepCompleted("r1", 0, 1, null, 1));
        Assert.Equal(new TokenGenerated("r1", 0, 4), client.ExpectMsg<TokenGenerated>(T));

        var s1 = CompleteStep(workers, nextToken: 7);
        Assert.Equal((1, 3), (s1.Step, s1.StartPosition));
        Assert.Equal(new[] { 4 }, s1.Tokens);
        Assert.Equal(new TokenGenerated("r1", 1, 7), client.ExpectMsg<TokenGenerated>(T));

        var s2 = CompleteStep(workers, nextToken: 2);
        Assert.Equal((2, 4), (s2.Step, s2.StartPosition));
        Assert.Equal(new[] { 7 }, s2.Tokens);
        Assert.Equal(new TokenGenerated("r1", 2, 2), client.ExpectMsg<TokenGenerated>(T));

        var done = client.ExpectMsg<GenerationCompleted>(T);
        Assert.Equal(new[] { 4, 7, 2 }, done.TokenIds);
        Assert.Equal("length", done.FinishReason);
        Assert.Equal(5, done.PositionAfter); // 3 prompt tokens + 2 fed decode tokens; the last one was only sampled
        workers[0].ExpectNoMsg(Quiet);
    }

    [Fact]
    public void Stops_at_a_stop_token_without_feeding_it_and_runs_the_next_queued_request()
    {
        var coordinator = StartCoordinator(worldSize: 1);
        var workers = ReadyCluster(coordinator, 1);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("a", [1], maxTokens: 10, stop: [2]));
        client.Send(coordinator, Request("b", [3], maxTokens: 1, start: 0));

        CompleteStep(workers, nextToken: 5);
        client.ExpectMsg<TokenGenerated>(T);
        CompleteStep(workers, nextToken: 2);
        Assert.Equal(new TokenGenerated("a", 1, 2), client.ExpectMsg<TokenGenerated>(T));
        var a = client.ExpectMsg<GenerationCompleted>(T);
        Assert.Equal(("a", "stop"), (a.RequestId, a.FinishReason));
        Assert.Equal(new[] { 5, 2 }, a.TokenIds);
        Assert.Equal(2, a.PositionAfter); // the stop token was not fed

        // The second request waited (stashed) and runs only now, from its own prompt.
        var b0 = CompleteStep(workers, nextToken: 6);
        Assert.Equal("b", b0.RequestId);
        Assert.Equal(new[] { 3 }, b0.Tokens);
        client.ExpectMsg<TokenGenerated>(T);
        Assert.Equal(new[] { 6 }, client.ExpectMsg<GenerationCompleted>(T).TokenIds);
    }

    [Fact]
    public void Fails_the_request_with_a_clear_error_when_a_worker_stops_mid_request()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("r", [1], maxTokens: 5));
        CompleteStep(workers, nextToken: 3);
        client.ExpectMsg<TokenGenerated>(T);
        workers[0].ExpectMsg<RunStep>(T);
        workers[1].ExpectMsg<RunStep>(T);

        Sys.Stop(workers[1].Ref);

        var failed = client.ExpectMsg<GenerationFailed>(T);
        Assert.Equal("r", failed.RequestId);
        Assert.Matches(@"^rank 1 \(.*\) is gone \(connection lost or process stopped\)$", failed.Reason);
        // The survivor is told to close its ring so nobody stays blocked in a collective.
        Assert.Equal(failed.Reason, workers[0].ExpectMsg<CloseRing>(T).Reason);

        // New requests wait for the rank to come back; a re-registered rank 1 re-forms the ring and serving resumes.
        client.Send(coordinator, Request("after", [2], maxTokens: 1));
        client.ExpectNoMsg(Quiet);
        var back = Worker(coordinator, 1, 2);
        FormAndLoad(coordinator, [workers[0], back], loaded: false);
        var step = CompleteStep([workers[0], back], nextToken: 4);
        Assert.Equal("after", step.RequestId);
        Assert.Equal(new TokenGenerated("after", 0, 4), client.ExpectMsg<TokenGenerated>(T));
    }

    [Fact]
    public void A_rank_leaving_cleanly_fails_the_request_with_its_reason()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("r", [1], maxTokens: 5));
        workers[0].ExpectMsg<RunStep>(T);
        workers[1].ExpectMsg<RunStep>(T);
        workers[1].Send(coordinator, new RankLeaving(1, "the process is stopping"));
        Assert.Equal("rank 1 is shutting down: the process is stopping", client.ExpectMsg<GenerationFailed>(T).Reason);
    }

    [Fact]
    public void Times_out_a_worker_that_never_answers_then_reforms_the_ring_and_keeps_the_weights()
    {
        var coordinator = StartCoordinator(worldSize: 2, stepTimeout: TimeSpan.FromMilliseconds(400));
        var workers = ReadyCluster(coordinator, 2);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("slow", [1], maxTokens: 2));
        var s0 = workers[0].ExpectMsg<RunStep>(T);
        workers[1].ExpectMsg<RunStep>(T);
        workers[0].Reply(new StepCompleted(s0.RequestId, 0, 0, Logits(1), 1));
        // rank 1 never answers

        var failed = client.ExpectMsg<GenerationFailed>(T);
        Assert.Equal("rank(s) 1 did not complete step 0 of request slow within 0.4 s", failed.Reason);
        workers[0].ExpectMsg<CloseRing>(T);
        workers[1].ExpectMsg<CloseRing>(T);

        // Both ranks are still registered, so the ring is re-formed without loading again.
        FormAndLoad(coordinator, workers, loaded: true);
        workers[0].ExpectNoMsg(Quiet);
        client.Send(coordinator, Request("next", [2], maxTokens: 1));
        CompleteStep(workers, nextToken: 3);
        Assert.Equal(new TokenGenerated("next", 0, 3), client.ExpectMsg<TokenGenerated>(T));
    }

    [Fact]
    public void A_ring_error_during_a_step_fails_the_request_with_the_ranks_reason()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("r", [1]));
        var s0 = workers[0].ExpectMsg<RunStep>(T);
        workers[1].ExpectMsg<RunStep>(T);
        workers[1].Reply(new StepFailed("r", 0, 1, "all-reduce #12: right neighbour rank 0 closed the connection"));
        Assert.Equal("rank 1 failed step 0 of request r: all-reduce #12: right neighbour rank 0 closed the connection",
            client.ExpectMsg<GenerationFailed>(T).Reason);
        // A late completion of the abandoned step changes nothing.
        workers[0].Reply(new StepCompleted(s0.RequestId, 0, 0, Logits(1), 1));
        client.ExpectNoMsg(Quiet);
    }

    [Fact]
    public void An_input_error_every_rank_reports_fails_only_the_request_and_keeps_the_ring()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("long", [1]));
        workers[0].ExpectMsg<RunStep>(T);
        workers[1].ExpectMsg<RunStep>(T);
        const string tooLong = "the sequence needs 300 positions but the context length is 256";
        workers[0].Reply(new StepFailed("long", 0, 0, tooLong, RingBroken: false));
        // The caller hears at once, from the first rank that rejects the input.
        Assert.Equal($"rank 0 failed step 0 of request long: {tooLong}", client.ExpectMsg<GenerationFailed>(T).Reason);
        client.Send(coordinator, Request("ok", [2], maxTokens: 1));
        workers[0].ExpectNoMsg(Quiet); // not before every rank agrees the step never ran
        workers[1].Reply(new StepFailed("long", 0, 1, tooLong, RingBroken: false));

        // No CloseRing: the queued request runs on the same ring.
        var step = CompleteStep(workers, nextToken: 3);
        Assert.Equal("ok", step.RequestId);
        client.ExpectMsg<TokenGenerated>(T);
        client.ExpectMsg<GenerationCompleted>(T);
    }

    [Fact]
    public void Ranks_that_disagree_about_an_input_error_get_a_fresh_ring()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("r", [1], maxTokens: 1));
        var s0 = workers[0].ExpectMsg<RunStep>(T);
        workers[1].ExpectMsg<RunStep>(T);
        workers[1].Reply(new StepFailed("r", 0, 1, "slot 0 holds 0 tokens; a forward must start at or before position 0", RingBroken: false));
        client.ExpectMsg<GenerationFailed>(T);
        // Rank 0 accepted the input (its cache differs), so the ring cannot be trusted: it is closed and re-formed.
        workers[0].Reply(new StepCompleted(s0.RequestId, 0, 0, Logits(1), 1));
        Assert.StartsWith("rank 0 ran step 0 that another rank rejected", workers[0].ExpectMsg<CloseRing>(T).Reason);
        workers[1].ExpectMsg<CloseRing>(T);
        FormAndLoad(coordinator, workers, loaded: true);
        client.ExpectNoMsg(TimeSpan.Zero); // the caller heard about its request exactly once
    }

    [Fact]
    public void A_continuation_needs_a_slot_whose_context_survived()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        var client = CreateTestProbe();
        client.Send(coordinator, Request("first", [1, 2], maxTokens: 1));
        CompleteStep(workers, nextToken: 5);
        client.ExpectMsg<TokenGenerated>(T);
        var first = client.ExpectMsg<GenerationCompleted>(T);
        Assert.Equal(2, first.PositionAfter);

        // Continuing the conversation is fine while every rank holds it.
        client.Send(coordinator, Request("second", [5, 7], maxTokens: 1, start: 2));
        var s = CompleteStep(workers, nextToken: 6);
        Assert.Equal(2, s.StartPosition);
        client.ExpectMsg<TokenGenerated>(T);
        client.ExpectMsg<GenerationCompleted>(T);

        // Rank 1 restarts: its cache is empty, so continuing would make the ranks disagree. Refused up front.
        Sys.Stop(workers[1].Ref);
        workers[0].ExpectMsg<CloseRing>(T);
        var back = Worker(coordinator, 1, 2);
        FormAndLoad(coordinator, [workers[0], back], loaded: false);
        client.Send(coordinator, Request("third", [6], maxTokens: 1, start: 4));
        var lost = client.ExpectMsg<GenerationFailed>(T);
        Assert.StartsWith("slot 0 has no conversation to continue at position 4: its context was lost", lost.Reason);
        Assert.True(lost.ContextLost);
        workers[0].ExpectNoMsg(Quiet);
        back.ExpectNoMsg(TimeSpan.Zero);
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
        rank1.Reply(new LoadFailed(1, g2, "30 attention heads cannot be split over 4 ranks"));

        var client = CreateTestProbe();
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
        workers[0].ExpectNoMsg(Quiet);
    }

    [Fact]
    public void Shutdown_tells_every_rank_and_refuses_later_requests()
    {
        var coordinator = StartCoordinator(worldSize: 2);
        var workers = ReadyCluster(coordinator, 2);
        coordinator.Tell(new ShutdownCluster("generate finished"), TestActor);
        Assert.Equal(new Shutdown("generate finished"), workers[0].ExpectMsg<Shutdown>(T));
        Assert.Equal(new Shutdown("generate finished"), workers[1].ExpectMsg<Shutdown>(T));
        Assert.False(ExpectMsg<ClusterStatus>(T).Ready);
        coordinator.Tell(Request("late", [1]), TestActor);
        Assert.Equal("the cluster was shut down: generate finished", ExpectMsg<GenerationFailed>(T).Reason);
    }

    private static float[] Logits(int best)
    {
        var l = new float[8];
        l[best] = 1;
        return l;
    }
}
