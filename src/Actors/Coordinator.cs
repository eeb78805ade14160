using System.Diagnostics;
using System.Globalization;
using ActorRing.Actors.Engine;
using ActorRing.Actors.Security;
using Akka.Actor;
using Akka.Event;

namespace ActorRing.Actors;

/// <summary>
/// Rank 0's control-plane brain, in two parts. The cluster supervisor (this file) admits ranks (secret proof,
/// world size, protocol version, model fingerprint), orders ring formation and shard loading, starts the step
/// loop on every rank once the cluster is ready (<see cref="StartServing"/>), and re-forms the ring after a
/// fault. The request side (Coordinator.Requests.cs) takes requests and cancellations and hands them to the
/// step loop through an in-process <see cref="Serving.ServingPort"/>; the loop streams results to the callers
/// itself, so no actor message is on the per-token path. Requests that arrive before the cluster is ready wait
/// in the port. A lost rank or a ring error suspends the requests in flight: they continue, with their caches
/// rebuilt, once the ring is back, or fail naming the rank if it is not back within the recovery timeout.
/// </summary>
public sealed partial class Coordinator : ReceiveActor, IWithUnboundedStash, IWithTimers
{
    public enum Phase { Gathering, FormingRing, Loading, Ready, Busy, Failed }

    private const string PhaseTimer = "phase-timeout";
    private const string RetryTimer = "retry-ring";
    private const string ShutdownTimer = "shutdown-grace";
    private const string RecoveryTimer = "recovery-timeout";

    /// <summary>How long a shutdown (or rank 0's departure) waits for remote ranks to acknowledge before it answers anyway.</summary>
    private static readonly TimeSpan ShutdownGrace = TimeSpan.FromSeconds(3);

    private readonly CoordinatorSettings _settings;
    private readonly ITokenPickerFactory _pickers;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<int, RankState> _ranks = new();
    private readonly Admission _admission;

    private int _generation;
    private Phase _phase = Phase.Gathering;
    private string _fatal = "";
    /// <summary>Rank 0 is leaving (its process stops, the other ranks stay for its next start): a worker dialing in
    /// meanwhile is refused without alarm.</summary>
    private bool _leaving;

    public Coordinator(CoordinatorSettings settings, ITokenPickerFactory pickers, Serving.ServingPort port, Serving.IStopRuleFactory? stopRules = null)
    {
        _stopRules = stopRules;
        if (settings.WorldSize < 1) throw new ArgumentOutOfRangeException(nameof(settings), "world size must be >= 1");
        _settings = settings;
        _pickers = pickers;
        _port = port;
        _admission = new Admission(settings.Secret, settings.WorldSize, settings.ModelFingerprint);
        Gathering();
    }

    public IStash Stash { get; set; } = null!;
    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(CoordinatorSettings settings, ITokenPickerFactory pickers, Serving.ServingPort port,
        Serving.IStopRuleFactory? stopRules = null) =>
        Akka.Actor.Props.Create(() => new Coordinator(settings, pickers, port, stopRules));

    private sealed class RankState(IActorRef worker)
    {
        public IActorRef Worker { get; } = worker;
        public bool RingReady { get; set; }
        public bool Loaded { get; set; }
        public double Progress { get; set; }
    }

    private sealed record RetryFormRing(int Generation) : INoSerializationVerificationNeeded;
    private sealed record PhaseTimedOut(int Generation, Phase Phase) : INoSerializationVerificationNeeded;
    private sealed record ShutdownGraceOver : INoSerializationVerificationNeeded;
    private sealed record RecoveryTimedOut(int Outage) : INoSerializationVerificationNeeded;

    /// <summary>Since when the serving ring has been down (null while it serves, or once its requests gave up
    /// waiting), and the latest reason, which names the lost rank once DeathWatch or the rank itself has said so.</summary>
    private DateTime? _downSince;
    private string _downReason = "";
    private int _outage;

    /// <summary>Remote workers told to shut down (or that rank 0 leaves) that have not acknowledged yet (stopped, or
    /// answered <see cref="MasterLeavingNoted"/>), and who asked.</summary>
    private readonly HashSet<IActorRef> _stopping = new();
    private IActorRef? _shutdownRequester;

    // ------------------------------------------------------------------ behaviours

    private void Gathering()
    {
        _phase = Phase.Gathering;
        RefuseRemoteClients();
        Receive<GenerateRequest>(Submit);
        Common();
    }

    private void FormingRing()
    {
        _phase = Phase.FormingRing;
        RefuseRemoteClients();
        Receive<GenerateRequest>(Submit);
        Receive<RingReady>(OnRingReady);
        Receive<PhaseTimedOut>(t => t.Generation == _generation && t.Phase == Phase.FormingRing, t =>
        {
            var missing = string.Join(", ", _ranks.Where(r => !r.Value.RingReady).Select(r => r.Key));
            RestartRing($"ring formation timed out after {Seconds(_settings.RingTimeout)}: rank(s) {missing} did not connect");
        });
        Common();
    }

    private void Loading()
    {
        _phase = Phase.Loading;
        RefuseRemoteClients();
        Receive<GenerateRequest>(Submit);
        Receive<ShardLoaded>(OnShardLoaded);
        Receive<LoadFailed>(f => f.Generation == _generation && RankOf(Sender) == f.Rank, f =>
            GoFatal($"rank {f.Rank} could not load its shard: {f.Reason}"));
        Receive<PhaseTimedOut>(t => t.Generation == _generation && t.Phase == Phase.Loading, _ =>
        {
            var missing = string.Join(", ", _ranks.Where(r => !r.Value.Loaded).Select(r => r.Key));
            GoFatal($"loading timed out after {Seconds(_settings.LoadTimeout)}: rank(s) {missing} did not finish");
        });
        Common();
    }

    private void Ready()
    {
        _phase = Phase.Ready;
        RefuseRemoteClients();
        Receive<GenerateRequest>(Submit);
        Common();
    }

    /// <summary>
    /// Sends every rank <paramref name="order"/> (stop, or rank 0 is leaving) and stops serving with
    /// <paramref name="fatal"/>. The requester is answered once every remote rank has acknowledged (stopped, or
    /// noted the departure), or after <see cref="ShutdownGrace"/>: rank 0's process exits once answered, and an
    /// order still queued on the wire would then never arrive, leaving the ranks to find out through a lost
    /// connection. Rank 0's own worker ends its step loop, whose stop plan lets the others' loops end cleanly.
    /// </summary>
    private void DismissRanks(IClusterMessage order, string fatal)
    {
        foreach (var (_, state) in _ranks)
        {
            state.Worker.Tell(order);
            if (state.Worker.Path.Address.HasLocalScope) Context.Unwatch(state.Worker);
            else _stopping.Add(state.Worker);
        }
        _ranks.Clear();
        _fatal = fatal;
        _port.FailQueued(_fatal);
        Become(Failed);
        Stash.UnstashAll();
        _shutdownRequester = Sender;
        if (_stopping.Count == 0) AnswerShutdown();
        else Timers.StartSingleTimer(ShutdownTimer, new ShutdownGraceOver(), ShutdownGrace);
    }

    private void AnswerShutdown()
    {
        Timers.Cancel(ShutdownTimer);
        _shutdownRequester?.Tell(Status());
        _shutdownRequester = null;
    }

    private void Failed()
    {
        _phase = Phase.Failed;
        RefuseRemoteClients();
        Receive<GenerateRequest>(r => Sender.Tell(new GenerationFailed(r.RequestId, _fatal)));
        Common();
    }

    /// <summary>
    /// The client API (generate, cancel, status, shutdown) is for rank 0's own process (CLI, HTTP front end).
    /// Akka.Remote accepts any peer that reaches master_port, and only registration proves the secret, so a
    /// client message from another process is refused rather than trusted. Registered first in every phase.
    /// </summary>
    private void RefuseRemoteClients()
    {
        Receive<IControlMessage>(m => m is GenerateRequest or CancelGeneration or GetClusterStatus or ShutdownCluster or LeaveCluster
                                      && !Sender.Path.Address.HasLocalScope, m =>
        {
            const string reason = "client requests are accepted only from inside rank 0's process";
            _log.Warning("refused {0} from {1}: {2}", m.GetType().Name, Sender.Path, reason);
            if (m is GenerateRequest r) Sender.Tell(new GenerationFailed(r.RequestId, reason));
        });
    }

    /// <summary>Handlers valid in every phase: admission, departures, status and shutdown.</summary>
    private void Common()
    {
        Receive<Hello>(OnHello);
        Receive<Register>(OnRegister);
        Receive<CoordinatorRefused>(r =>
        {
            // Retries repeat every second; one line per peer and reason keeps the log readable.
            if (_admission.FirstRefusal(Sender.Path.Address.ToString(), r.Reason))
                _log.Warning("rank {0} at {1} refused to register: {2}", r.Rank, Sender.Path.Address, r.Reason);
        });
        Receive<Terminated>(t =>
        {
            if (_stopping.Remove(t.ActorRef))
            {
                if (_stopping.Count == 0) AnswerShutdown();
                return;
            }
            var rank = RankOf(t.ActorRef);
            if (rank is null) return;
            LoseRank(rank.Value, $"rank {rank} ({t.ActorRef.Path.Address}) is gone (connection lost or process stopped)");
        });
        Receive<RankLeaving>(l =>
        {
            if (RankOf(Sender) != l.Rank) return;
            Context.Unwatch(Sender);
            LoseRank(l.Rank, $"rank {l.Rank} is shutting down: {l.Reason}");
        });
        Receive<RingFailed>(f =>
        {
            if (f.Generation != _generation || RankOf(Sender) != f.Rank) return;
            if (_phase is Phase.Failed or Phase.Gathering) return;
            RestartRing($"rank {f.Rank} reported a ring failure: {f.Reason}");
        });
        Receive<RetryFormRing>(r =>
        {
            if (r.Generation != _generation || _phase != Phase.Gathering) return;
            if (_ranks.Count == _settings.WorldSize) StartRingFormation();
        });
        Receive<LoadProgress>(p =>
        {
            if (!_ranks.TryGetValue(p.Rank, out var state) || !state.Worker.Equals(Sender)) return;
            state.Progress = p.Fraction;
            _log.Info("rank {0}/{1} loaded {2}", p.Rank, _settings.WorldSize,
                (p.Fraction * 100).ToString("0", CultureInfo.InvariantCulture) + "%");
        });
        Receive<GetClusterStatus>(_ => Sender.Tell(Status()));
        Receive<ShutdownGraceOver>(_ =>
        {
            _log.Warning("{0} rank(s) did not answer within {1} s of the shutdown", _stopping.Count, ShutdownGrace.TotalSeconds);
            _stopping.Clear();
            AnswerShutdown();
        });
        Receive<ShutdownCluster>(s =>
        {
            _log.Info("shutting the cluster down: {0}", s.Reason);
            DismissRanks(new Shutdown(s.Reason), $"the cluster was shut down: {s.Reason}");
        });
        Receive<LeaveCluster>(l =>
        {
            _log.Info("rank 0 is leaving: {0}; the other ranks stay up for its next start", l.Reason);
            _leaving = true;
            DismissRanks(new MasterLeaving(l.Reason), $"rank 0 is stopping: {l.Reason}");
        });
        Receive<MasterLeavingNoted>(n =>
        {
            if (!_stopping.Remove(Sender)) return;
            Context.Unwatch(Sender);
            if (_stopping.Count == 0) AnswerShutdown();
        });
        // Stale replies from abandoned generations or requests are expected after a failure; drop them quietly.
        Receive<ServingStopped>(f =>
        {
            if (RankOf(Sender) is null && !Sender.Path.Address.HasLocalScope)
            {
                // A worker this coordinator has dropped (DeathWatch fired while it was paused) may not know it: its
                // own failure detector can miss the pause. Its broken ring makes it report here, so tell it to
                // register again rather than leave it waiting for a FormRing that will never come.
                Sender.Tell(new RegistrationRefused(f.Rank, $"rank {f.Rank} at {Sender.Path.Address} is not registered (the coordinator lost it); register again"));
                return;
            }
            if (f.Generation != _generation || RankOf(Sender) != f.Rank) return;
            if (_phase is Phase.Failed or Phase.Gathering) return;
            RestartRing($"rank {f.Rank}'s step loop stopped: {f.Reason}");
        });
        Receive<RecoveryTimedOut>(t => t.Outage == _outage && _downSince is not null, _ => GiveUpRecovery());
        Receive<RecoveryTimedOut>(_ => { });
        Receive<PhaseTimedOut>(_ => { });
        Receive<RingReady>(_ => { });
        Receive<ShardLoaded>(_ => { });
        Receive<LoadFailed>(_ => { });
        Receive<CancelGeneration>(Cancel);
    }

    // ------------------------------------------------------------------ admission

    private void OnHello(Hello hello) => Sender.Tell(_admission.Open(hello));

    private void OnRegister(Register r)
    {
        string? refusal = _admission.Check(r);
        bool rankTaken = false;
        if (refusal is null && _ranks.TryGetValue(r.Rank, out var existing) && !existing.Worker.Equals(Sender))
        {
            refusal = $"rank {r.Rank} is already registered by {existing.Worker.Path}; is this rank started twice? Check the rank field of each ring file";
            rankTaken = true;
        }
        else if (refusal is null && _phase == Phase.Failed)
            refusal = $"the coordinator is not accepting ranks: {_fatal}";

        if (refusal is not null)
        {
            if (_admission.FirstRefusal(Sender.Path.Address.ToString(), refusal))
                _log.Warning("refused registration of rank {0} from {1}: {2}", r.Rank, Sender.Path, refusal);
            Sender.Tell(new RegistrationRefused(r.Rank, refusal, rankTaken, RankZeroLeaving: _phase == Phase.Failed && _leaving));
            return;
        }

        // A worker whose first Hello was answered late (a busy machine) registers once per Hello it sent; each
        // gets its answer, but only the first is news.
        bool again = _ranks.ContainsKey(r.Rank);
        if (!again)
        {
            _ranks[r.Rank] = new RankState(Sender);
            Context.Watch(Sender);
        }
        Sender.Tell(_admission.Accept(r));
        if (again) _log.Debug("rank {0} registered again from {1} (an answer to an earlier Hello)", r.Rank, Sender.Path.Address);
        else _log.Info("rank {0}/{1} registered from {2} ({3} of {1} present)", r.Rank, _settings.WorldSize, Sender.Path.Address, _ranks.Count);
        if (_phase == Phase.Gathering && _ranks.Count == _settings.WorldSize) StartRingFormation();
    }

    // ------------------------------------------------------------------ ring and loading

    private void StartRingFormation()
    {
        _generation++;
        foreach (var state in _ranks.Values) state.RingReady = false;
        _log.Info("all {0} ranks registered; forming the ring (generation {1})", _settings.WorldSize, _generation);
        foreach (var state in _ranks.Values) state.Worker.Tell(new FormRing(_generation));
        Timers.StartSingleTimer(PhaseTimer, new PhaseTimedOut(_generation, Phase.FormingRing), _settings.RingTimeout);
        Become(FormingRing);
    }

    private void OnRingReady(RingReady ready)
    {
        if (ready.Generation != _generation || !_ranks.TryGetValue(ready.Rank, out var state) || !state.Worker.Equals(Sender)) return;
        state.RingReady = true;
        state.Loaded = ready.ShardLoaded;
        if (_ranks.Values.Any(s => !s.RingReady)) return;

        Timers.Cancel(PhaseTimer);
        var toLoad = _ranks.Where(r => !r.Value.Loaded).ToList();
        if (toLoad.Count == 0)
        {
            BecomeReady();
            return;
        }
        _log.Info("ring formed; loading shards on rank(s) {0}", string.Join(", ", toLoad.Select(r => r.Key)));
        foreach (var (_, s) in toLoad)
        {
            s.Progress = 0;
            s.Worker.Tell(new LoadShard(_generation));
        }
        Timers.StartSingleTimer(PhaseTimer, new PhaseTimedOut(_generation, Phase.Loading), _settings.LoadTimeout);
        Become(Loading);
    }

    private void OnShardLoaded(ShardLoaded loaded)
    {
        if (loaded.Generation != _generation || !_ranks.TryGetValue(loaded.Rank, out var state) || !state.Worker.Equals(Sender)) return;
        state.Loaded = true;
        state.Progress = 1;
        _log.Info("rank {0}/{1} loaded 100%", loaded.Rank, _settings.WorldSize);
        if (_ranks.Values.All(s => s.Loaded))
        {
            Timers.Cancel(PhaseTimer);
            BecomeReady();
        }
    }

    private void BecomeReady()
    {
        _log.Info("cluster ready: {0} rank(s), ring generation {1}", _settings.WorldSize, _generation);
        if (_downSince is { } since)
        {
            Timers.Cancel(RecoveryTimer);
            _log.Info("recovered {0:0.0} s after the ring was lost ({1}); {2} suspended request(s) continue", (DateTime.UtcNow - since).TotalSeconds, _downReason, _port.Suspended);
            _downSince = null;
        }
        _port.Resume();
        WarmUp(); // before the loop starts, which takes it first
        // Highest rank first: followers are waiting for the first plan before rank 0 sends it.
        foreach (var (_, state) in _ranks.OrderByDescending(r => r.Key)) state.Worker.Tell(new StartServing(_generation));
        Become(Ready);
        Stash.UnstashAll();
    }

    /// <summary>A ring problem with every rank still registered: fail the request, close every socket (which also
    /// releases ranks blocked in a collective), and form the ring again. Loaded weights stay loaded.</summary>
    private void RestartRing(string reason)
    {
        _log.Error("{0}", reason);
        RingDown(reason);
        CloseRingEverywhere(reason);
        Timers.StartSingleTimer(RetryTimer, new RetryFormRing(_generation), _settings.RetryDelay);
        Become(Gathering);
    }

    private void LoseRank(int rank, string reason)
    {
        _ranks.Remove(rank);
        _log.Warning("{0}; waiting for it to register again", reason);
        if (_phase == Phase.Failed) return;
        RingDown(reason);
        CloseRingEverywhere(reason);
        Become(Gathering);
    }

    private void CloseRingEverywhere(string reason)
    {
        _generation++;
        // Closing the ring ends every rank's step loop; rank 0's fails its running requests with the ring's error.
        Timers.Cancel(PhaseTimer);
        foreach (var state in _ranks.Values)
        {
            state.RingReady = false;
            state.Worker.Tell(new CloseRing(_generation, reason));
        }
    }

    /// <summary>
    /// The serving ring is lost: the step loop suspends its requests in the port (StepLoop), and they wait at most
    /// <see cref="CoordinatorSettings.RecoveryTimeout"/> from the first fault for the ring to come back. Later faults
    /// of the same outage only refine the reason. A fault while nothing serves suspends nothing.
    /// </summary>
    private void RingDown(string reason)
    {
        if (_downSince is not null)
        {
            _downReason = reason;
            return;
        }
        if (_phase is not (Phase.Ready or Phase.Busy)) return;
        _downSince = DateTime.UtcNow;
        _downReason = reason;
        _outage++;
        Timers.StartSingleTimer(RecoveryTimer, new RecoveryTimedOut(_outage), _settings.RecoveryTimeout);
    }

    /// <summary>The ring did not come back in time: every suspended request fails (and any the loop suspends later,
    /// until the cluster is ready again), naming what is missing.</summary>
    private void GiveUpRecovery()
    {
        var missing = Enumerable.Range(0, _settings.WorldSize).Where(r => !_ranks.ContainsKey(r)).ToList();
        string what = missing.Count > 0
            ? $"rank {string.Join(", ", missing)} did not come back"
            : "the ring did not re-form";
        string reason = $"{what} within the recovery timeout of {Seconds(_settings.RecoveryTimeout)} ({_downReason})";
        _log.Error("{0}; failing {1} suspended request(s)", reason, _port.Suspended);
        _downSince = null;
        _port.FailQueued(reason);
    }

    private void GoFatal(string reason)
    {
        _log.Error("{0}", reason);
        _fatal = reason;
        _port.FailQueued(reason);
        Timers.Cancel(PhaseTimer);
        Become(Failed);
        Stash.UnstashAll();
    }

    // ------------------------------------------------------------------ helpers

    private int? RankOf(IActorRef worker)
    {
        foreach (var (rank, state) in _ranks)
            if (state.Worker.Equals(worker)) return rank;
        return null;
    }

    private ClusterStatus Status()
    {
        string detail = _phase switch
        {
            Phase.Gathering when _ranks.Count == _settings.WorldSize => "re-forming the ring after an error",
            Phase.Gathering => $"waiting for ranks: {_ranks.Count}/{_settings.WorldSize} registered (missing {string.Join(", ", Enumerable.Range(0, _settings.WorldSize).Where(r => !_ranks.ContainsKey(r)))})",
            Phase.FormingRing => $"forming the ring: {_ranks.Values.Count(s => s.RingReady)}/{_settings.WorldSize} connected",
            Phase.Loading => "loading: " + string.Join(", ", _ranks.OrderBy(r => r.Key).Select(r =>
                $"rank {r.Key} {(r.Value.Progress * 100).ToString("0", CultureInfo.InvariantCulture)}%")),
            Phase.Ready when _port.Load is { Running: 0, Waiting: 0 } => "ready",
            Phase.Ready => $"ready: {_port.Load.Running} running, {_port.Load.Waiting} waiting",
            Phase.Failed => _fatal,
            _ => "",
        };
        if (_downSince is { } since && _phase is not (Phase.Ready or Phase.Busy or Phase.Failed))
        {
            var left = _settings.RecoveryTimeout - (DateTime.UtcNow - since);
            detail += $"; the ring was lost ({_downReason}); {_port.Suspended} request(s) in flight are suspended until it is back (at most {Math.Max(0, left.TotalSeconds):0} s more)";
        }
        return new ClusterStatus(_phase.ToString(), _ranks.Count, _settings.WorldSize, _phase is Phase.Ready or Phase.Busy, detail);
    }

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + " s";
}
