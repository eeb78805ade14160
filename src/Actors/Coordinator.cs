using System.Diagnostics;
using System.Globalization;
using ActorRing.Actors.Engine;
using ActorRing.Actors.Security;
using Akka.Actor;
using Akka.Event;

namespace ActorRing.Actors;

/// <summary>
/// Rank 0's control-plane brain. It admits ranks (secret proof, world size, protocol version, model
/// fingerprint), orders ring formation and shard loading, then sequences inference one step at a time:
/// every rank gets the same <see cref="RunStep"/>, rank 0's worker returns the logits, and the next token is
/// picked here and streamed to the caller. Requests that arrive before the cluster is ready are stashed.
/// A lost rank, a ring error or a step timeout fails the in-flight request with a message naming the rank.
/// </summary>
public sealed class Coordinator : ReceiveActor, IWithUnboundedStash, IWithTimers
{
    public enum Phase { Gathering, FormingRing, Loading, Ready, Busy, Failed }

    private const string StepTimer = "step-timeout";
    private const string PhaseTimer = "phase-timeout";
    private const string RetryTimer = "retry-ring";
    private const string AgreementTimer = "input-error-agreement";
    private const string ShutdownTimer = "shutdown-grace";

    /// <summary>How long a shutdown waits for remote ranks to stop before it answers anyway.</summary>
    private static readonly TimeSpan ShutdownGrace = TimeSpan.FromSeconds(3);

    /// <summary>After one rank rejects a step's input, how long the others get to reject it too before the ring
    /// is assumed out of step (a rank that accepted the input is blocked in a collective).</summary>
    private static readonly TimeSpan InputErrorAgreement = TimeSpan.FromSeconds(5);

    private readonly CoordinatorSettings _settings;
    private readonly ITokenPickerFactory _pickers;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<int, RankState> _ranks = new();
    private readonly Admission _admission;

    /// <summary>Slots whose KV cache holds the same context on every rank. A continuation (start position &gt; 0)
    /// is only valid for these: a rank that rejoined, or a ring that failed mid-step, leaves caches that differ.</summary>
    private readonly HashSet<int> _slotsWithContext = new();
    private int _generation;
    private Phase _phase = Phase.Gathering;
    private string _fatal = "";
    private ActiveRequest? _active;

    public Coordinator(CoordinatorSettings settings, ITokenPickerFactory pickers)
    {
        if (settings.WorldSize < 1) throw new ArgumentOutOfRangeException(nameof(settings), "world size must be >= 1");
        _settings = settings;
        _pickers = pickers;
        _admission = new Admission(settings.Secret, settings.WorldSize, settings.ModelFingerprint);
        Gathering();
    }

    public IStash Stash { get; set; } = null!;
    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(CoordinatorSettings settings, ITokenPickerFactory pickers) =>
        Akka.Actor.Props.Create(() => new Coordinator(settings, pickers));

    private sealed class RankState(IActorRef worker)
    {
        public IActorRef Worker { get; } = worker;
        public bool RingReady { get; set; }
        public bool Loaded { get; set; }
        public double Progress { get; set; }
    }

    private sealed class ActiveRequest(GenerateRequest request, IActorRef client, ITokenPicker picker)
    {
        public GenerateRequest Request { get; } = request;
        public IActorRef Client { get; } = client;
        public ITokenPicker Picker { get; } = picker;
        public List<int> History { get; } = new(request.PromptTokens);
        public List<int> Generated { get; } = new();
        public HashSet<int> Awaiting { get; } = new();
        public int Step { get; set; }
        public int Position { get; set; } = request.StartPosition;
        public float[]? Logits { get; set; }
        public double StepMaxComputeMs { get; set; }
        public long StepStarted { get; set; }
        public long Started { get; } = Stopwatch.GetTimestamp();
        public double PrefillMs { get; set; }
        public double DecodeWallMs { get; set; }
        public double DecodeComputeMs { get; set; }
        public bool CancelRequested { get; set; }
        public string? InputError { get; set; }
    }

    private sealed record RetryFormRing(int Generation) : INoSerializationVerificationNeeded;
    private sealed record PhaseTimedOut(int Generation, Phase Phase) : INoSerializationVerificationNeeded;
    private sealed record StepTimedOut(string RequestId, int Step) : INoSerializationVerificationNeeded;
    private sealed record AgreementTimedOut(string RequestId, int Step) : INoSerializationVerificationNeeded;
    private sealed record ShutdownGraceOver : INoSerializationVerificationNeeded;

    /// <summary>Remote workers told to shut down that have not stopped yet, and who asked for the shutdown.</summary>
    private readonly HashSet<IActorRef> _stopping = new();
    private IActorRef? _shutdownRequester;

    // ------------------------------------------------------------------ behaviours

    private void Gathering()
    {
        _phase = Phase.Gathering;
        RefuseRemoteClients();
        Receive<GenerateRequest>(_ => Stash.Stash());
        Common();
    }

    private void FormingRing()
    {
        _phase = Phase.FormingRing;
        RefuseRemoteClients();
        Receive<GenerateRequest>(_ => Stash.Stash());
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
        Receive<GenerateRequest>(_ => Stash.Stash());
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
        Receive<GenerateRequest>(StartRequest);
        Common();
    }

    private void Busy()
    {
        _phase = Phase.Busy;
        RefuseRemoteClients();
        Receive<GenerateRequest>(_ => Stash.Stash());
        Receive<StepCompleted>(OnStepCompleted);
        Receive<StepFailed>(OnStepFailed);
        Receive<AgreementTimedOut>(t =>
        {
            if (_active is null || t.RequestId != _active.Request.RequestId || t.Step != _active.Step) return;
            var missing = string.Join(", ", _active.Awaiting.Order());
            RestartRing($"rank(s) {missing} did not reject the input of step {t.Step} like the others; the ring may be out of step");
        });
        Receive<StepTimedOut>(t =>
        {
            if (_active is null || t.RequestId != _active.Request.RequestId || t.Step != _active.Step) return;
            var missing = string.Join(", ", _active.Awaiting.Order());
            RestartRing($"rank(s) {missing} did not complete step {t.Step} of request {t.RequestId} within {Seconds(_settings.StepTimeout)}");
        });
        Receive<CancelGeneration>(c =>
        {
            if (_active is not null && c.RequestId == _active.Request.RequestId) _active.CancelRequested = true;
        });
        Common();
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
        Receive<IControlMessage>(m => m is GenerateRequest or CancelGeneration or GetClusterStatus or ShutdownCluster
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
            _log.Warning("{0} rank(s) did not stop within {1} s of the shutdown", _stopping.Count, ShutdownGrace.TotalSeconds);
            _stopping.Clear();
            AnswerShutdown();
        });
        Receive<ShutdownCluster>(s =>
        {
            _log.Info("shutting the cluster down: {0}", s.Reason);
            if (_active is not null) FailActive($"the cluster is shutting down: {s.Reason}");
            foreach (var (_, state) in _ranks)
            {
                state.Worker.Tell(new Shutdown(s.Reason));
                // The answer waits (briefly) until remote ranks have stopped: rank 0's process exits once it
                // is answered, and a Shutdown still queued on the wire would then never arrive, leaving the
                // other ranks to find out through a lost connection.
                if (state.Worker.Path.Address.HasLocalScope) Context.Unwatch(state.Worker);
                else _stopping.Add(state.Worker);
            }
            _ranks.Clear();
            _fatal = $"the cluster was shut down: {s.Reason}";
            Become(Failed);
            Stash.UnstashAll();
            _shutdownRequester = Sender;
            if (_stopping.Count == 0) AnswerShutdown();
            else Timers.StartSingleTimer(ShutdownTimer, new ShutdownGraceOver(), ShutdownGrace);
        });
        // Stale replies from abandoned generations or requests are expected after a failure; drop them quietly.
        Receive<StepCompleted>(_ => { });
        Receive<StepFailed>(_ => { });
        Receive<StepTimedOut>(_ => { });
        Receive<AgreementTimedOut>(_ => { });
        Receive<PhaseTimedOut>(_ => { });
        Receive<RingReady>(_ => { });
        Receive<ShardLoaded>(_ => { });
        Receive<LoadFailed>(_ => { });
        Receive<CancelGeneration>(_ => { });
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
            Sender.Tell(new RegistrationRefused(r.Rank, refusal, rankTaken));
            return;
        }

        if (!_ranks.ContainsKey(r.Rank))
        {
            _ranks[r.Rank] = new RankState(Sender);
            Context.Watch(Sender);
        }
        Sender.Tell(_admission.Accept(r));
        _log.Info("rank {0}/{1} registered from {2} ({3} of {1} present)", r.Rank, _settings.WorldSize,
            Sender.Path.Address, _ranks.Count);
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
        Become(Ready);
        Stash.UnstashAll();
    }

    /// <summary>A ring problem with every rank still registered: fail the request, close every socket (which also
    /// releases ranks blocked in a collective), and form the ring again. Loaded weights stay loaded.</summary>
    private void RestartRing(string reason)
    {
        _log.Error("{0}", reason);
        if (_active is not null) FailActive(reason);
        CloseRingEverywhere(reason);
        Timers.StartSingleTimer(RetryTimer, new RetryFormRing(_generation), _settings.RetryDelay);
        Become(Gathering);
    }

    private void LoseRank(int rank, string reason)
    {
        _ranks.Remove(rank);
        _log.Warning("{0}; waiting for it to register again", reason);
        if (_phase == Phase.Failed) return;
        if (_active is not null) FailActive(reason);
        CloseRingEverywhere(reason);
        Become(Gathering);
    }

    private void CloseRingEverywhere(string reason)
    {
        _generation++;
        // A re-formed ring may include a fresh rank, and a failed step may have written some caches only.
        _slotsWithContext.Clear();
        Timers.Cancel(PhaseTimer);
        Timers.Cancel(StepTimer);
        foreach (var state in _ranks.Values)
        {
            state.RingReady = false;
            state.Worker.Tell(new CloseRing(_generation, reason));
        }
    }

    private void GoFatal(string reason)
    {
        _log.Error("{0}", reason);
        _fatal = reason;
        Timers.Cancel(PhaseTimer);
        Become(Failed);
        Stash.UnstashAll();
    }

    // ------------------------------------------------------------------ inference

    private void StartRequest(GenerateRequest request)
    {
        string? invalid = request switch
        {
            { PromptTokens.Length: 0 } => "the prompt is empty: give at least one token",
            { StartPosition: < 0 } => $"start position {request.StartPosition} is negative",
            { Slot: < 0 } => $"slot {request.Slot} is negative",
            { Sampling.MaxTokens: < 1 } => $"max_tokens must be at least 1, got {request.Sampling.MaxTokens}",
            _ => null,
        };
        if (invalid is not null)
        {
            Sender.Tell(new GenerationFailed(request.RequestId, invalid));
            return;
        }
        if (request.StartPosition > 0 && !_slotsWithContext.Contains(request.Slot))
        {
            Sender.Tell(new GenerationFailed(request.RequestId,
                $"slot {request.Slot} has no conversation to continue at position {request.StartPosition}: its context was lost (a rank rejoined, the ring was re-formed, or an earlier request failed); start a new conversation from position 0", ContextLost: true));
            return;
        }
        ITokenPicker picker;
        try
        {
            picker = _pickers.Create(request.Sampling);
        }
        catch (ArgumentException e)
        {
            Sender.Tell(new GenerationFailed(request.RequestId, $"invalid sampling options: {e.Message}"));
            return;
        }
        _slotsWithContext.Remove(request.Slot); // valid again only if this request completes
        _active = new ActiveRequest(request, Sender, picker);
        Become(Busy);
        DispatchStep(request.PromptTokens);
    }

    private void DispatchStep(int[] tokens)
    {
        var a = _active!;
        a.Awaiting.Clear();
        a.Logits = null;
        a.StepMaxComputeMs = 0;
        a.StepStarted = Stopwatch.GetTimestamp();
        var step = new RunStep(a.Request.RequestId, a.Step, a.Request.Slot, tokens, a.Position);
        // Highest rank first: remote ranks get their message onto the wire before rank 0's local worker starts
        // (and then waits for them in the first all-reduce).
        foreach (var (rank, state) in _ranks.OrderByDescending(r => r.Key))
        {
            a.Awaiting.Add(rank);
            state.Worker.Tell(step);
        }
        Timers.StartSingleTimer(StepTimer, new StepTimedOut(a.Request.RequestId, a.Step), _settings.StepTimeout);
    }

    private void OnStepFailed(StepFailed f)
    {
        var a = _active;
        if (a is null || f.RequestId != a.Request.RequestId || f.Step != a.Step) return;
        if (!_ranks.TryGetValue(f.Rank, out var state) || !state.Worker.Equals(Sender) || !a.Awaiting.Remove(f.Rank)) return;
        var reason = $"rank {f.Rank} failed step {f.Step} of request {f.RequestId}: {f.Reason}";
        if (f.RingBroken)
        {
            RestartRing(reason);
            return;
        }
        // An input error (e.g. the context is full) is found by every rank before any collective. The caller
        // hears at once; the ring is trusted again only when every rank has rejected the same step.
        if (a.InputError is null)
        {
            _log.Warning("{0}", reason);
            a.InputError = reason;
            a.Client.Tell(new GenerationFailed(a.Request.RequestId, reason));
            Timers.Cancel(StepTimer);
            Timers.StartSingleTimer(AgreementTimer, new AgreementTimedOut(a.Request.RequestId, a.Step), InputErrorAgreement);
        }
        if (a.Awaiting.Count > 0) return;
        Timers.Cancel(AgreementTimer);
        _slotsWithContext.Remove(a.Request.Slot);
        _active = null;
        Become(Ready);
        Stash.UnstashAll();
    }

    private void OnStepCompleted(StepCompleted done)
    {
        var a = _active;
        if (a is null || done.RequestId != a.Request.RequestId || done.Step != a.Step) return;
        if (!_ranks.TryGetValue(done.Rank, out var state) || !state.Worker.Equals(Sender)) return;
        if (!a.Awaiting.Remove(done.Rank)) return;
        if (a.InputError is not null)
        {
            RestartRing($"rank {done.Rank} ran step {done.Step} that another rank rejected; re-forming the ring to bring the ranks back in step");
            return;
        }
        if (done.Rank == 0) a.Logits = done.Logits;
        a.StepMaxComputeMs = Math.Max(a.StepMaxComputeMs, done.ComputeMs);
        if (a.Awaiting.Count > 0) return;

        Timers.Cancel(StepTimer);
        double wallMs = Stopwatch.GetElapsedTime(a.StepStarted).TotalMilliseconds;
        if (a.Step == 0) a.PrefillMs = wallMs;
        else
        {
            a.DecodeWallMs += wallMs;
            a.DecodeComputeMs += Math.Min(wallMs, a.StepMaxComputeMs);
        }
        a.Position += a.Step == 0 ? a.Request.PromptTokens.Length : 1;

        if (a.Logits is null)
        {
            RestartRing($"rank 0 returned no logits for step {a.Step} of request {a.Request.RequestId}");
            return;
        }
        int token;
        try
        {
            token = a.Picker.Pick(a.Logits, a.History);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            FailActive($"sampling failed at step {a.Step}: {e.Message}");
            Become(Ready);
            Stash.UnstashAll();
            return;
        }

        // A stop token is part of the output (as in generate's ids) but is never fed back to the model.
        a.Generated.Add(token);
        a.History.Add(token);
        a.Client.Tell(new TokenGenerated(a.Request.RequestId, a.Generated.Count - 1, token));
        var stops = a.Request.Sampling.StopTokenIds;
        if (stops is not null && Array.IndexOf(stops, token) >= 0)
        {
            Finish("stop");
            return;
        }
        if (a.Generated.Count >= a.Request.Sampling.MaxTokens)
        {
            Finish("length");
            return;
        }
        if (a.CancelRequested)
        {
            Finish("cancelled");
            return;
        }
        a.Step++;
        DispatchStep([token]);
    }

    private void Finish(string reason)
    {
        var a = _active!;
        _active = null;
        _slotsWithContext.Add(a.Request.Slot);
        int decodeSteps = a.Step; // step 0 is the prefill
        double msPerToken = decodeSteps > 0 ? a.DecodeWallMs / decodeSteps : a.PrefillMs;
        double controlShare = a.DecodeWallMs > 0 ? Math.Max(0, 1 - a.DecodeComputeMs / a.DecodeWallMs) : 0;
        a.Client.Tell(new GenerationCompleted(a.Request.RequestId, a.Generated.ToArray(), reason, a.Position,
            a.PrefillMs, msPerToken, controlShare));
        Become(Ready);
        Stash.UnstashAll();
    }

    private void FailActive(string reason)
    {
        var a = _active!;
        _active = null;
        Timers.Cancel(StepTimer);
        Timers.Cancel(AgreementTimer);
        _slotsWithContext.Remove(a.Request.Slot);
        if (a.InputError is null) a.Client.Tell(new GenerationFailed(a.Request.RequestId, reason));
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
            Phase.Ready => "ready",
            Phase.Busy => $"generating request {_active?.Request.RequestId}",
            Phase.Failed => _fatal,
            _ => "",
        };
        return new ClusterStatus(_phase.ToString(), _ranks.Count, _settings.WorldSize, _phase is Phase.Ready or Phase.Busy, detail);
    }

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + " s";
}
