using System.Diagnostics;
using ActorRing.Actors.Engine;
using ActorRing.Actors.Security;
using ActorRing.Actors.Serving;
using ActorRing.Model.Batching;
using ActorRing.Transport;
using Akka.Actor;
using Akka.Event;

namespace ActorRing.Actors;

/// <summary>How a rank finds and proves itself to the coordinator.</summary>
/// <param name="CoordinatorPath">Actor path of the coordinator, e.g. akka.tcp://actorring@10.0.0.1:1234/user/coordinator.</param>
/// <param name="RetryInterval">Pause between registration attempts; workers retry until rank 0 answers.</param>
/// <param name="OnShutdown">Called when the coordinator shuts the cluster down (the host stops the process).</param>
/// <param name="OnDialing">Called with true while the worker dials the coordinator (unanswered connection
/// attempts are expected then) and with false once it is registered.</param>
/// <param name="OnRefused">Called when this process gives up for good: its rank is held by another live process
/// (the host stops with an error). Null: the worker just stops dialing.</param>
/// <param name="RankTakenGrace">How long a "rank taken" refusal is retried before giving up (null: 15 s), long
/// enough for rank 0 to notice that the holder has just died (a fast restart).</param>
public sealed record ShardWorkerSettings(
    int Rank, int WorldSize, byte[] Secret, string CoordinatorPath, TimeSpan RetryInterval, Action<string>? OnShutdown = null,
    Action<bool>? OnDialing = null, Action<string>? OnRefused = null, TimeSpan? RankTakenGrace = null);

/// <summary>What rank 0's worker needs to run the step loop: the coordinator's queue of requests and the
/// scheduler's limits.</summary>
public sealed record RankServing(ServingPort Port, SchedulerOptions Scheduling);

/// <summary>
/// Every rank's worker. It registers with the coordinator (proving the secret, and checking the coordinator's
/// own proof), has its <see cref="RingPeer"/> child form the ring when told, loads this rank's shard and runs
/// the step loop on a dedicated <see cref="ComputeThread"/> when told to serve (rank 0 plans and samples, the
/// others follow its plans over the ring: <see cref="StepLoop"/>), and reports progress and failures back as
/// messages. Its mailbox never waits on compute.
/// </summary>
public sealed class ShardWorker : ReceiveActor, IWithTimers
{
    private const string HelloTimer = "hello";
    private static readonly TimeSpan MaxRetryInterval = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan FirstWaitingReport = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan MaxWaitingReport = TimeSpan.FromMinutes(5);

    private readonly ShardWorkerSettings _settings;
    private readonly IShardEngineFactory _engines;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly ComputeThread _compute;
    private readonly IActorRef _ringPeer;
    private IActorRef _coordinator = ActorRefs.Nobody;
    /// <summary>The nonces of the latest Hellos (a Challenge may answer an earlier one), and the registrations
    /// sent and not yet answered, by server nonce, with their client nonce.</summary>
    private readonly List<string> _clientNonces = new();
    private readonly Dictionary<string, string> _registering = new(StringComparer.Ordinal);
    private bool _everRegistered;
    private DateTime? _rankTakenSince;
    private string _lastRefusal = "";
    private RingCollectives? _collectives;
    private int _ringGeneration = -1;
    private IShardEngine? _engine;
    private bool _loading;
    private TimeSpan _retryInterval;
    private readonly RankServing? _serving;

    /// <summary>Set once the ring is being closed on purpose (CloseRing, Shutdown): a loop that then fails on the
    /// closed ring ended as asked, which is not worth an error.</summary>
    private bool _loopEnding;
    private bool _shutDown;

    /// <summary>Stops rank 0's running step loop (it otherwise waits for requests for ever at world size 1).</summary>
    private CancellationTokenSource? _loopStop;

    /// <summary>Ends rank 0's running step loop because its ring is being closed: its requests are suspended in the
    /// serving port until the next ring, instead of failing.</summary>
    private CancellationTokenSource? _loopSuspend;
    private DateTime _dialingSince;
    private TimeSpan _nextWaitingReport;

    /// <summary>The newest LoadShard generation: a load that outlives a ring re-formation answers that one.</summary>
    private int _loadGeneration;

    public ShardWorker(ShardWorkerSettings settings, IShardEngineFactory engines, Props ringPeerProps, RankServing? serving = null)
    {
        _settings = settings;
        _engines = engines;
        _serving = serving;
        if (settings.Rank == 0 && serving is null) throw new ArgumentException("rank 0's worker runs the step loop and needs its serving port", nameof(serving));
        _compute = new ComputeThread($"actorring-compute-rank{settings.Rank}");
        _ringPeer = Context.ActorOf(ringPeerProps, "ring-peer");
        Dialing();
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(ShardWorkerSettings settings, IShardEngineFactory engines, Props ringPeerProps, RankServing? serving = null) =>
        Akka.Actor.Props.Create(() => new ShardWorker(settings, engines, ringPeerProps, serving));

    private sealed record SendHello : INoSerializationVerificationNeeded;
    private sealed record LoadDone(int Generation, IShardEngine? Engine, Exception? Error) : INoSerializationVerificationNeeded;
    private sealed record ServingDone(int Generation, Exception? Error) : INoSerializationVerificationNeeded;
    private sealed record CloseForShutdown(string Reason) : INoSerializationVerificationNeeded;
    private sealed record RedialAfterLoop(string Reason) : INoSerializationVerificationNeeded;
    private sealed record LocalProgress(int Generation, double Fraction) : INoSerializationVerificationNeeded;

    protected override void PreStart() => StartDialing();

    /// <summary>Timers are not available in the constructor, so dialing starts here and on every return to it.</summary>
    private void StartDialing()
    {
        _retryInterval = _settings.RetryInterval;
        _dialingSince = DateTime.UtcNow;
        _nextWaitingReport = FirstWaitingReport;
        _settings.OnDialing?.Invoke(true);
        _log.Info("rank {0}/{1}: dialing the coordinator at {2}", _settings.Rank, _settings.WorldSize, _settings.CoordinatorPath);
        Self.Tell(new SendHello());
    }

    /// <summary>Each unanswered attempt waits 1.5 times longer, up to <see cref="MaxRetryInterval"/>: a rank that
    /// starts long before rank 0 does not flood the network and the log, yet joins within seconds of it.</summary>
    private TimeSpan NextRetry()
    {
        var next = _retryInterval;
        _retryInterval = TimeSpan.FromTicks(Math.Min((long)(_retryInterval.Ticks * 1.5), Math.Max(MaxRetryInterval.Ticks, _settings.RetryInterval.Ticks)));
        return next;
    }

    // ------------------------------------------------------------------ registration

    private void Dialing()
    {
        Receive<SendHello>(_ =>
        {
            Timers.StartSingleTimer(HelloTimer, new SendHello(), NextRetry());
            var clientNonce = RegistrationProof.NewNonce();
            Remember(_clientNonces, clientNonce);
            ReportWaiting();
            Context.ActorSelection(_settings.CoordinatorPath).Tell(new Hello(_settings.Rank, clientNonce));
        });
        // The worker proves the secret first; the coordinator's proof comes only in Registered.
        Receive<Challenge>(c => _clientNonces.Contains(c.ClientNonce), c =>
        {
            if (_registering.Count >= 8) _registering.Clear();
            _registering[c.ServerNonce] = c.ClientNonce;
            var fingerprint = _engines.ModelFingerprint;
            var proof = RegistrationProof.Worker(_settings.Secret, c.ClientNonce, c.ServerNonce, _settings.Rank,
                _settings.WorldSize, ControlProtocol.Version, fingerprint);
            Sender.Tell(new Register(_settings.Rank, _settings.WorldSize, ControlProtocol.Version, fingerprint,
                c.ClientNonce, c.ServerNonce, proof));
        });
        Receive<Registered>(r => _registering.ContainsKey(r.ServerNonce), r =>
        {
            var expected = RegistrationProof.Coordinator(_settings.Secret, _registering[r.ServerNonce], r.ServerNonce, _settings.Rank, _settings.WorldSize);
            if (r.Rank != _settings.Rank || r.WorldSize != _settings.WorldSize || !RegistrationProof.Matches(expected, r.CoordinatorProof))
            {
                var reason = $"the coordinator at {Sender.Path.Address} failed to prove the cluster secret; set the same ACTORRING_SECRET on every rank";
                LogRefusalOnce(reason);
                Sender.Tell(new CoordinatorRefused(_settings.Rank, reason));
                return;
            }
            Timers.Cancel(HelloTimer);
            _registering.Clear();
            _clientNonces.Clear();
            _coordinator = Sender;
            _lastRefusal = "";
            _everRegistered = true;
            Context.Watch(_coordinator);
            _log.Info("rank {0}/{1}: registered with the coordinator at {2}", _settings.Rank, _settings.WorldSize, _coordinator.Path.Address);
            _settings.OnDialing?.Invoke(false);
            Become(Active);
        });
        Receive<RegistrationRefused>(r => r.RankTaken && !_everRegistered, OnRankTaken);
        Receive<RegistrationRefused>(r => LogRefusalOnce($"the coordinator refused rank {r.Rank}: {r.Reason}", failure: !r.RankZeroLeaving));
        Common();
    }

    /// <summary>
    /// Another process holds this rank. It may be one that has just died (a fast restart) and that rank 0 has not
    /// noticed yet, so the refusal is retried for a grace period; after that this process gives up with one error.
    /// </summary>
    private void OnRankTaken(RegistrationRefused r)
    {
        var now = DateTime.UtcNow;
        _rankTakenSince ??= now;
        var grace = _settings.RankTakenGrace ?? TimeSpan.FromSeconds(15);
        if (now - _rankTakenSince < grace) return;
        var reason = $"rank {_settings.Rank}: the coordinator refused this process: {r.Reason}; stopping (another process serves this rank)";
        _log.Error("{0}", reason);
        Timers.Cancel(HelloTimer);
        Become(Refused);
        if (_settings.OnRefused is { } onRefused) onRefused(reason);
    }

    private void Refused() => Common();

    private static void Remember(List<string> recent, string nonce)
    {
        if (recent.Count >= 8) recent.RemoveAt(0);
        recent.Add(nonce);
    }

    /// <summary>
    /// Unanswered dialing is silent in Akka (association errors are hidden while dialing), so the worker says
    /// itself what it waits for, after 10 s and then at doubling intervals up to every 5 minutes.
    /// </summary>
    private void ReportWaiting()
    {
        var waited = DateTime.UtcNow - _dialingSince;
        if (waited < _nextWaitingReport) return;
        _nextWaitingReport = TimeSpan.FromTicks(Math.Min(waited.Ticks * 2, MaxWaitingReport.Ticks));
        _log.Info("rank {0}/{1}: still waiting for the coordinator at {2} to answer ({3:0} s so far); is rank 0 running, and can this machine reach its master_port? Retrying every {4:0} s",
            _settings.Rank, _settings.WorldSize, _settings.CoordinatorPath, waited.TotalSeconds, _retryInterval.TotalSeconds);
    }

    /// <summary>Refusals repeat on every retry; log each distinct reason once so the log stays readable.</summary>
    private void LogRefusalOnce(string reason, bool failure = true)
    {
        if (reason == _lastRefusal) return;
        _lastRefusal = reason;
        // Rank 0 on its way out is no failure: this rank dials on and registers with its next start.
        if (failure) _log.Error("rank {0}: {1}", _settings.Rank, reason);
        else _log.Info("rank {0}: {1}; dialing on for rank 0's next start", _settings.Rank, reason);
    }

    // ------------------------------------------------------------------ registered

    private void Active()
    {
        Receive<FormRing>(f => FromCoordinator(), f => _ringPeer.Tell(new RingPeer.Connect(f.Generation, _coordinator)));
        Receive<RingPeer.Connected>(c =>
        {
            _collectives = c.Collectives;
            _ringGeneration = c.Generation;
            _coordinator.Tell(new RingReady(_settings.Rank, c.Generation, _engine is not null));
        });
        Receive<RingPeer.ConnectFailed>(_ => { }); // the peer reports it to the coordinator itself
        Receive<CloseRing>(c => FromCoordinator(), c =>
        {
            _loopEnding = true;
            SuspendLoop();
            _ringPeer.Tell(new RingPeer.Close(c.Generation, c.Reason));
        });
        Receive<LoadShard>(l => FromCoordinator(), l => StartLoad(l.Generation));
        Receive<LocalProgress>(p => _coordinator.Tell(new LoadProgress(_settings.Rank, p.Fraction)));
        Receive<LoadDone>(OnLoadDone);
        Receive<StartServing>(s => FromCoordinator(), StartLoop);
        Receive<ServingDone>(OnServingDone);
        Receive<Shutdown>(s => FromCoordinator(), s =>
        {
            _log.Info("rank {0}: the coordinator shuts the cluster down: {1}", _settings.Rank, s.Reason);
            // Rank 0 exits right after this; its end is expected now, not a loss to report.
            Context.Unwatch(_coordinator);
            _coordinator = ActorRefs.Nobody; // no RankLeaving for a shutdown the coordinator ordered
            EndLoopThen(new CloseForShutdown(s.Reason), "shutdown-close");
        });
        Receive<MasterLeaving>(m => FromCoordinator(), m =>
        {
            Sender.Tell(new MasterLeavingNoted(_settings.Rank));
            Context.Unwatch(_coordinator);
            _coordinator = ActorRefs.Nobody;
            if (_settings.Rank == 0)
            {
                // Rank 0's own worker only ends its loop (that sends the stop plan): its process is exiting.
                _loopEnding = true;
                StopLoop();
                return;
            }
            _log.Info("rank {0}: rank 0 is leaving ({1}); this rank stays up, keeps its shard and dials it again", _settings.Rank, m.Reason);
            // Rank 0's going is expected now: its connection's loss is not worth Akka's warnings.
            _settings.OnDialing?.Invoke(true);
            EndLoopThen(new RedialAfterLoop($"rank 0 left: {m.Reason}"), "leave-redial");
        });
        Receive<RedialAfterLoop>(r =>
        {
            Timers.Cancel("leave-redial");
            Redial(r.Reason);
        });
        Receive<CloseForShutdown>(s =>
        {
            if (_shutDown) return;
            _shutDown = true;
            Timers.Cancel("shutdown-close");
            _ringPeer.Tell(new RingPeer.Close(_ringGeneration, s.Reason));
            if (_settings.OnShutdown is { } onShutdown) onShutdown(s.Reason);
            else Context.Stop(Self);
        });
        Receive<Terminated>(t => t.ActorRef.Equals(_coordinator), t =>
        {
            _log.Warning("rank {0}: the coordinator at {1} is gone; closing the ring and dialing it again", _settings.Rank, t.ActorRef.Path.Address);
            _coordinator = ActorRefs.Nobody;
            Redial("coordinator lost");
        });
        // The coordinator dropped this rank while it could not answer (a pause), and this rank's own failure
        // detector did not notice: it registers again, keeping its weights.
        Receive<RegistrationRefused>(r => Sender.Path.Address.Equals(_coordinator.Path.Address), r =>
        {
            _log.Warning("rank {0}: {1}; closing the ring and dialing the coordinator again", _settings.Rank, r.Reason);
            Context.Unwatch(_coordinator);
            _coordinator = ActorRefs.Nobody;
            Redial("the coordinator dropped this rank");
        });
        Common();
    }

    /// <summary>
    /// Ends the step loop as ordered, then sends <paramref name="next"/> to this actor once the compute thread is
    /// free (the work queued behind the loop has run), or after a grace if a collective hangs. Rank 0's loop sends
    /// the other ranks a stop plan as it ends, so they leave their loops cleanly before their ring closes.
    /// </summary>
    private void EndLoopThen(object next, string graceTimer)
    {
        _loopEnding = true;
        StopLoop();
        var self = Self;
        _compute.Run(() => 0).PipeTo(self, success: _ => next, failure: _ => next);
        Timers.StartSingleTimer(graceTimer, next, TimeSpan.FromSeconds(2));
    }

    private void Redial(string reason)
    {
        StopLoop();
        _ringPeer.Tell(new RingPeer.Close(_ringGeneration, reason));
        Become(Dialing);
        StartDialing();
    }

    private void Common()
    {
        Receive<SendHello>(_ => { });
        Receive<Challenge>(_ => { });
        Receive<Registered>(_ => { });
        Receive<RegistrationRefused>(_ => { });
        Receive<LoadDone>(d => d.Engine?.Dispose());
        Receive<ServingDone>(_ => { });
        Receive<CloseForShutdown>(_ => { });
        Receive<RedialAfterLoop>(_ => { });
        Receive<LocalProgress>(_ => { });
        Receive<RingPeer.Connected>(_ => { });
        Receive<RingPeer.ConnectFailed>(_ => { });
        // A coordinator this worker no longer follows (it re-dialled, or the cluster was shut down): an
        // unhandled Terminated would stop the worker with a DeathPactException.
        Receive<Terminated>(_ => { });
    }

    /// <summary>Only the coordinator this rank registered with may drive it.</summary>
    private bool FromCoordinator()
    {
        if (Sender.Equals(_coordinator)) return true;
        _log.Warning("rank {0}: ignoring a control message from {1}, which is not the registered coordinator", _settings.Rank, Sender.Path);
        return false;
    }

    private void StartLoad(int generation)
    {
        _loadGeneration = generation;
        if (_engine is not null)
        {
            _coordinator.Tell(new ShardLoaded(_settings.Rank, generation));
            return;
        }
        if (_loading) return;
        if (_collectives is null)
        {
            _coordinator.Tell(new LoadFailed(_settings.Rank, generation, $"rank {_settings.Rank} was told to load before its ring formed"));
            return;
        }
        _loading = true;
        var self = Self;
        var collectives = _collectives;
        var progress = new ThrottledProgress(f => self.Tell(new LocalProgress(generation, f)));
        _log.Info("rank {0}/{1}: loading shard", _settings.Rank, _settings.WorldSize);
        _compute.Run(() => _engines.Load(collectives, progress, CancellationToken.None)).PipeTo(Self,
            success: engine => new LoadDone(generation, engine, null),
            failure: e => new LoadDone(generation, null, e));
    }

    private void OnLoadDone(LoadDone done)
    {
        _loading = false;
        if (done.Engine is not null)
        {
            _engine = done.Engine;
            _log.Info("rank {0}/{1}: shard loaded", _settings.Rank, _settings.WorldSize);
            _coordinator.Tell(new ShardLoaded(_settings.Rank, _loadGeneration));
            return;
        }
        var error = Unwrap(done.Error!);
        _log.Error("rank {0}: loading failed: {1}", _settings.Rank, error.Message);
        if (error is CollectiveException) _ringPeer.Tell(new RingPeer.Broken(_ringGeneration, error.Message));
        _coordinator.Tell(new LoadFailed(_settings.Rank, _loadGeneration, error.Message));
    }

    /// <summary>
    /// Starts this rank's side of the step loop on the compute thread, where it runs until stopped: rank 0 plans,
    /// executes and samples (<see cref="StepLoop.Run"/>); other ranks execute the plans rank 0 sends
    /// (<see cref="StepLoop.Follow"/>), until a stop plan or a ring error.
    /// </summary>
    private void StartLoop(StartServing start)
    {
        if (_engine is null || _collectives is null)
        {
            _coordinator.Tell(new ServingStopped(_settings.Rank, start.Generation, $"rank {_settings.Rank} was told to serve before its shard loaded"));
            return;
        }
        SuspendLoop(); // a loop still running hands its requests on to this one
        _loopEnding = false;
        var engine = _engine;
        var collectives = _collectives;
        Func<int> loop;
        if (_settings.Rank == 0)
        {
            var serving = _serving!;
            var stop = _loopStop = new CancellationTokenSource();
            var suspend = _loopSuspend = new CancellationTokenSource();
            var log = _log;
            loop = () =>
            {
                // Every rank agrees on the cache size at each loop's start (a collective: a rank that came back may
                // have room for a different number of blocks).
                var blocks = StepLoop.AgreeKvBlocks(engine, collectives);
                if (blocks < engine.KvBlocks)
                    log.Info("rank 0: the KV cache is limited to {0} blocks, the smallest any rank has (this rank has {1})", blocks, engine.KvBlocks);
                // Requests a lost ring suspended continue on this one (their caches are rebuilt by prefill); the
                // engine, and so its KV blocks, is the same one, as rank 0 never reloads. Their block tables name
                // blocks of the old agreement, so they continue only if every rank still has that many.
                var scheduler = serving.Port.TakeSuspended();
                if (scheduler is not null && scheduler.KvBlocks.Total > blocks)
                {
                    string reason = $"a rank that rejoined has room for {blocks} KV blocks, fewer than the {scheduler.KvBlocks.Total} the suspended requests' block tables use";
                    log.Warning("rank 0: {0}; failing {1} suspended request(s)", reason, scheduler.Running + scheduler.Waiting);
                    foreach (var e in scheduler.FailAll(reason)) e.Deliver();
                    scheduler = null;
                }
                if (scheduler is not null)
                    log.Info("rank 0: resuming {0} running and {1} waiting request(s) from the lost ring; rebuilding their KV caches", scheduler.Running, scheduler.Waiting);
                scheduler ??= new Scheduler(serving.Scheduling, new KvBlockPool(blocks, engine.KvBlockSize), engine.ContextLength);
                new StepLoop(engine, collectives, scheduler, serving.Port).Run(stop.Token, suspend.Token);
                return 0;
            };
        }
        else
        {
            loop = () =>
            {
                StepLoop.AgreeKvBlocks(engine, collectives);
                StepLoop.Follow(engine, collectives);
                return 0;
            };
        }
        _log.Info("rank {0}/{1}: serving (ring generation {2})", _settings.Rank, _settings.WorldSize, start.Generation);
        _compute.Run(loop).PipeTo(Self,
            success: _ => new ServingDone(start.Generation, null),
            failure: e => new ServingDone(start.Generation, e));
    }

    private void StopLoop()
    {
        _loopStop?.Cancel();
        _loopStop = null;
        _loopSuspend = null;
    }

    private void SuspendLoop()
    {
        _loopSuspend?.Cancel();
        _loopStop = null;
        _loopSuspend = null;
    }

    private void OnServingDone(ServingDone done)
    {
        if (done.Error is null) return; // stopped as asked
        var error = Unwrap(done.Error);
        if (_loopEnding)
        {
            _log.Info("rank {0}: the step loop ended with the ring: {1}", _settings.Rank, error.Message);
            return;
        }
        _log.Error("rank {0}: the step loop stopped: {1}", _settings.Rank, error.Message);
        // A collective error leaves the ring in an unknown state; the peer closes it so neighbours fail fast.
        if (error is CollectiveException) _ringPeer.Tell(new RingPeer.Broken(_ringGeneration, error.Message));
        _coordinator.Tell(new ServingStopped(_settings.Rank, done.Generation, error.Message));
    }

    private static Exception Unwrap(Exception e) => e is AggregateException { InnerExceptions.Count: 1 } a ? Unwrap(a.InnerExceptions[0]) : e;

    protected override void PostStop()
    {
        // Tell rank 0 why we are going, so in-flight work fails now rather than at the failure detector's timeout.
        if (!_coordinator.IsNobody()) _coordinator.Tell(new RankLeaving(_settings.Rank, "the process is stopping"));
        // The ring-peer child has already closed the sockets, so a step blocked in a collective has failed.
        StopLoop();
        var engine = _engine;
        _engine = null;
        if (engine is not null) _compute.Run(() => { engine.Dispose(); return 0; }).Wait(TimeSpan.FromSeconds(5));
        _compute.Dispose();
        base.PostStop();
    }

    /// <summary>Reports load progress in steps of at least 5%, so a large model does not flood the control plane.</summary>
    private sealed class ThrottledProgress(Action<double> report) : IProgress<double>
    {
        private double _last = -1;

        public void Report(double value)
        {
            if (value < _last + 0.05 && value < 1) return;
            _last = value;
            report(Math.Clamp(value, 0, 1));
        }
    }
}
