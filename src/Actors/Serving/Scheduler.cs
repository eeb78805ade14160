using System.Diagnostics;
using System.Runtime.InteropServices;
using ActorRing.Model.Batching;

namespace ActorRing.Actors.Serving;

/// <summary>
/// Decides every step of the serving loop (plain C#, run on rank 0's compute thread): which requests run,
/// which tokens each feeds, and when each stops.
/// <list type="bullet">
/// <item>A fair FIFO waiting queue: requests are admitted in arrival order, and the head is never skipped
/// (a large request waits for room rather than being overtaken for ever by small ones).</item>
/// <item>Limits: at most <see cref="SchedulerOptions.MaxBatch"/> running sequences, and the KV cache.</item>
/// <item>KV memory is reserved at admission, not preempted: a request is admitted only when the blocks for its
/// whole prompt plus max_tokens (capped at the context) are free, and it keeps them to the end. So a running
/// request never fails or stalls because another grew, at the price of admitting fewer requests than a
/// preempt-and-recompute scheduler would when most requests stop well before max_tokens. A request that could
/// not fit even in an empty cache is refused at once, with the numbers.</item>
/// <item>A step mixes every running decode (one token each, first, so streams never stall) with chunks of
/// prompts (at most <see cref="SchedulerOptions.PrefillChunk"/> tokens each) within a per-step token budget.</item>
/// <item>Every stop check is here: stop token ids (EOS), the request's own stop rule (stop strings),
/// max_tokens, a full context, and cancellation.</item>
/// <item>A lost ring loses no request (<see cref="Suspend"/>): every sequence keeps its tokens, its picker (so a
/// seeded RNG continues where it was) and its KV blocks, and on the next ring its cache is rebuilt by prefilling
/// the prompt and the tokens generated so far; then it decodes on as if nothing had happened.</item>
/// <item>Prefix caching (<see cref="SchedulerOptions.PrefixCaching"/>): a request admitted with a prompt that
/// starts with cached full blocks shares them and starts its prefill after them; every full block a sequence
/// writes is registered for later requests (see <see cref="KvBlockPool"/>).</item>
/// </list>
/// Not thread-safe: the loop calls it from one thread; other threads reach it through <see cref="StepLoop"/>'s queue.
/// </summary>
public sealed class Scheduler
{
    private readonly SchedulerOptions _options;
    private readonly KvBlockPool _pool;
    private readonly int _context;
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = new();
    private readonly Dictionary<string, Sequence> _byId = new(StringComparer.Ordinal);
    private readonly List<ServingEvent> _pending = new();
    private int _nextSequenceId;
    private int _cancelled; // cancelled sequences not yet finished
    private readonly Dictionary<int, Sequence> _runningById = new();

    public Scheduler(SchedulerOptions options, KvBlockPool pool, int contextLength)
    {
        _options = options.Validate();
        _pool = pool;
        _context = contextLength;
    }

    public int Running => _running.Count;
    public int Waiting => _waiting.Count;

    /// <summary>KV blocks reserved by the admitted sequences, and the pool's size (for /metrics).</summary>
    public (int Used, int Total) KvBlocks => (_pool.Total - _pool.Free, _pool.Total);
    public bool Idle => _running.Count == 0 && _waiting.Count == 0 && _pending.Count == 0;

    /// <summary>No request was ever submitted: no block holds anything (not even an evictable prefix).</summary>
    public bool Fresh => Idle && _nextSequenceId == 0;

    public SchedulerOptions Options => _options;

    private sealed class Sequence(ServingRequest request, int id)
    {
        public ServingRequest Request { get; } = request;
        public int Id { get; } = id;
        public int[] Blocks { get; set; } = [];

        /// <summary>Positions in the KV cache: the prompt, then every generated token but the last.</summary>
        public int Fed { get; set; }
        public List<int> Generated { get; } = new();
        public List<int> History { get; } = new(request.PromptTokens);
        public bool Cancelled { get; set; }
        public long Submitted { get; } = Stopwatch.GetTimestamp();
        public long FirstToken { get; set; }
        public long LastToken { get; set; }
        public double DecodeWallMs { get; set; }
        public double DecodeComputeMs { get; set; }
        public int Prompt => Request.PromptTokens.Length;

        /// <summary>Positions a prefill must fill before the sequence decodes: its prompt, or after a
        /// <see cref="Suspend"/> also every generated token but the last (the next decode feeds that one).</summary>
        public int PrefillTarget => Generated.Count == 0 ? Prompt : Prompt + Generated.Count - 1;
        public bool Prefilled => Fed >= PrefillTarget;

        /// <summary>Prompt tokens whose KV came from the prefix cache (not prefilled).</summary>
        public int CachedTokens { get; set; }

        /// <summary>This sequence's registered blocks; null once a key collision ended its chain.</summary>
        public KvBlockPool.PrefixChain? Chain { get; set; } = KvBlockPool.PrefixChain.Empty;
    }

    /// <summary>Positions a request can occupy: its prompt, then every generated token but the last (which is
    /// sampled, never fed), up to the context.</summary>
    private int MaxPositions(ServingRequest r) => Math.Min(r.PromptTokens.Length + r.Sampling.MaxTokens - 1, _context);

    /// <summary>Queues <paramref name="request"/>, or returns why it can never run (nothing is queued then).</summary>
    public string? Submit(ServingRequest request)
    {
        int prompt = request.PromptTokens.Length;
        if (prompt == 0) return "the prompt is empty: give at least one token";
        if (request.Sampling.MaxTokens < 1) return $"max_tokens must be at least 1, got {request.Sampling.MaxTokens}";
        if (prompt > _context)
            return $"the prompt has {prompt} tokens but the context holds {_context}; shorten the prompt or load with a longer --context";
        int need = _pool.BlocksFor(MaxPositions(request));
        if (need > _pool.Total)
            return $"the request needs {need} KV blocks ({MaxPositions(request)} positions: {prompt} prompt tokens + max_tokens {request.Sampling.MaxTokens} - 1, in blocks of {_pool.BlockSize}) but the whole cache has {_pool.Total} blocks ({_pool.Total * _pool.BlockSize} positions); lower max_tokens or give the server a larger --kv-cache-tokens";
        if (_byId.ContainsKey(request.RequestId)) return $"request id {request.RequestId} is already in use";
        var s = new Sequence(request, _nextSequenceId++);
        _byId[request.RequestId] = s;
        _waiting.AddLast(s);
        return null;
    }

    /// <summary>Asks a request to stop: a waiting one ends at the next plan without running, a running one
    /// after its next sampled token at the latest (finish reason "cancelled"). Unknown ids are ignored.</summary>
    public void Cancel(string requestId)
    {
        if (_byId.TryGetValue(requestId, out var s) && !s.Cancelled)
        {
            s.Cancelled = true;
            _cancelled++;
        }
    }

    /// <summary>
    /// The next step's plan (null when there is nothing to run). Also ends cancelled requests, and admits
    /// waiting ones in order while the batch and the KV cache have room.
    /// </summary>
    public StepPlan? Plan(long step)
    {
        // Checked without allocating first: this runs every step, and cancellations are rare.
        if (_cancelled > 0)
        {
            foreach (var s in _waiting.Where(s => s.Cancelled).ToList())
            {
                _waiting.Remove(s);
                Finish(s, "cancelled");
            }
            foreach (var s in _running.Where(s => s.Cancelled).ToList()) Finish(s, "cancelled");
        }

        while (_waiting.First is { } head && _running.Count < _options.MaxBatch)
        {
            var s = head.Value;
            if (!Admit(s)) break; // the head waits for room; nobody overtakes it
            _waiting.RemoveFirst();
            _running.Add(s);
            _runningById.Add(s.Id, s);
        }

        int budget = _options.EffectiveStepTokens;
        var work = new List<SequenceStep>();
        foreach (var s in _running)
        {
            if (!s.Prefilled || s.Generated.Count == 0) continue;
            int position = s.Prompt + s.Generated.Count - 1;
            work.Add(Step(s, position, [s.Generated[^1]], sample: true));
            budget--;
        }
        foreach (var s in _running)
        {
            if (s.Prefilled || budget <= 0) continue;
            int target = s.PrefillTarget;
            int chunk = Math.Min(Math.Min(_options.PrefillChunk, target - s.Fed), budget);
            // History is the prompt followed by the generated tokens, so a rebuild after Suspend replays both;
            // only a fresh prompt samples at its end (a rebuilt sequence samples in its next decode).
            var tokens = CollectionsMarshal.AsSpan(s.History).Slice(s.Fed, chunk).ToArray();
            work.Add(Step(s, s.Fed, tokens, sample: s.Generated.Count == 0 && s.Fed + chunk == target));
            budget -= chunk;
        }
        return work.Count == 0 ? null : new StepPlan(step, work);
    }

    /// <summary>Reserves the blocks <paramref name="s"/> can ever need, sharing the cached blocks its prompt starts
    /// with (the last prompt token is always fed: its logits give the first token). False, with nothing taken,
    /// when the cache has no room.</summary>
    private bool Admit(Sequence s)
    {
        int need = _pool.BlocksFor(MaxPositions(s.Request));
        var (shared, chain) = _options.PrefixCaching
            ? _pool.AcquirePrefix(s.Request.PromptTokens, (s.Prompt - 1) / _pool.BlockSize)
            : ([], KvBlockPool.PrefixChain.Empty);
        var own = _pool.TryAllocate(need - shared.Length);
        if (own is null)
        {
            _pool.Release(shared);
            return false;
        }
        s.Blocks = [.. shared, .. own];
        s.Chain = chain;
        s.Fed = s.CachedTokens = shared.Length * _pool.BlockSize;
        return true;
    }

    /// <summary>Registers every block of <paramref name="s"/> that is full once its first <paramref name="written"/>
    /// positions hold keys and values, so later requests with the same prefix can share it. Call it before the
    /// sequence can finish (which releases its blocks).</summary>
    private void CacheFullBlocks(Sequence s, int written)
    {
        if (!_options.PrefixCaching) return;
        int full = Math.Min(written / _pool.BlockSize, s.Blocks.Length);
        while (s.Chain is { } chain && chain.Blocks < full)
        {
            int i = chain.Blocks;
            s.Chain = _pool.Register(chain, s.Blocks[i], System.Runtime.InteropServices.CollectionsMarshal.AsSpan(s.History).Slice(i * _pool.BlockSize, _pool.BlockSize));
        }
    }

    private SequenceStep Step(Sequence s, int start, int[] tokens, bool sample)
    {
        // Only the blocks this step touches travel in the plan.
        int blocks = _pool.BlocksFor(start + tokens.Length);
        return new SequenceStep(s.Id, start, tokens, s.Blocks[..blocks], sample);
    }

    /// <summary>
    /// Takes a step's result: advances prefills, samples every sequence that needed a token with its own
    /// picker, applies the stop checks, and frees the blocks of finished requests. <paramref name="stepWallMs"/>
    /// is the step's time on the loop (planning to sampling), for each request's control-share figure.
    /// Returns the events to deliver, in order.
    /// </summary>
    public IReadOnlyList<ServingEvent> Complete(StepPlan plan, StepResult result, double stepWallMs)
    {
        int sampled = 0;
        foreach (var step in plan.Sequences)
        {
            if (!_runningById.TryGetValue(step.SequenceId, out var s)) continue;
            // Every position before the step's end now holds its keys and values on every rank (decodes included).
            int written = step.StartPosition + step.Tokens.Length;
            s.Fed = written;
            if (!step.NeedsLogits)
            {
                CacheFullBlocks(s, written);
                continue;
            }
            var logits = result.Logits[sampled++];
            if (s.Generated.Count > 0)
            {
                s.DecodeWallMs += stepWallMs;
                s.DecodeComputeMs += Math.Min(stepWallMs, result.ComputeMs);
            }
            Model.Sampling.SampledToken picked;
            try
            {
                picked = s.Request.Picker.Sample(logits, s.History);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                Fail(s, $"sampling failed after {s.Generated.Count} tokens: {e.Message}");
                continue;
            }
            int token = picked.TokenId;
            long now = Stopwatch.GetTimestamp();
            if (s.Generated.Count == 0) s.FirstToken = now;
            s.LastToken = now;
            s.Generated.Add(token);
            s.History.Add(token);
            CacheFullBlocks(s, written);
            _pending.Add(new ServingEvent(s.Request, new TokenGenerated(s.Request.RequestId, s.Generated.Count - 1, token,
                picked.Logprob, picked.Top?.Select(t => t.TokenId).ToArray(), picked.Top?.Select(t => t.Logprob).ToArray())));
            var stops = s.Request.Sampling.StopTokenIds;
            if (stops is not null && Array.IndexOf(stops, token) >= 0) Finish(s, "stop");
            else if (s.Request.StopRule?.Stops(token) == true) Finish(s, "stop");
            else if (s.Generated.Count >= s.Request.Sampling.MaxTokens) Finish(s, "length");
            // The next decode would feed this token at position prompt + generated - 1.
            else if (s.Prompt + s.Generated.Count - 1 >= _context) Finish(s, "length");
            else if (s.Cancelled) Finish(s, "cancelled");
        }
        return TakeEvents();
    }

    /// <summary>Events produced outside <see cref="Complete"/> (cancellations of waiting requests).</summary>
    public IReadOnlyList<ServingEvent> TakeEvents()
    {
        var events = _pending.ToArray();
        _pending.Clear();
        return events;
    }

    /// <summary>
    /// The ring was lost in the middle of a step, so no rank's KV cache can be trusted (a restarted rank has an empty
    /// one): every running request will rebuild its cache by prefilling its prompt and generated tokens again, in
    /// the same blocks, on the next ring. Nothing is sampled twice: the interrupted step never reached sampling, so
    /// each picker's RNG continues from its last token. Waiting requests are untouched. Returns the requests that
    /// were running.
    /// </summary>
    public int Suspend()
    {
        foreach (var s in _running)
        {
            s.Fed = 0;
            // Its blocks are registered again as the rebuild writes them.
            s.Chain = KvBlockPool.PrefixChain.Empty;
        }
        // No cached prefix can be trusted either: a restarted rank's blocks are empty. Shared blocks stay held by
        // their sequences, which rewrite the same keys and values into them.
        _pool.ForgetCached();
        return _running.Count;
    }

    /// <summary>Fails every request, running and waiting (the ring broke, or the server stops), and frees every block.</summary>
    public IReadOnlyList<ServingEvent> FailAll(string reason)
    {
        foreach (var s in _running.ToList()) Fail(s, reason);
        foreach (var s in _waiting.ToList())
        {
            _waiting.Remove(s);
            _byId.Remove(s.Request.RequestId);
            _pending.Add(new ServingEvent(s.Request, new GenerationFailed(s.Request.RequestId, reason)));
        }
        _cancelled = 0; // nothing is left, cancelled or not
        return TakeEvents();
    }

    private void Finish(Sequence s, string reason)
    {
        Release(s);
        double ms(long from, long to) => Stopwatch.GetElapsedTime(from, to).TotalMilliseconds;
        double prefillMs = s.FirstToken == 0 ? 0 : ms(s.Submitted, s.FirstToken);
        double msPerToken = s.Generated.Count > 1 ? ms(s.FirstToken, s.LastToken) / (s.Generated.Count - 1) : prefillMs;
        double controlShare = s.DecodeWallMs > 0 ? Math.Max(0, 1 - s.DecodeComputeMs / s.DecodeWallMs) : 0;
        _pending.Add(new ServingEvent(s.Request, new GenerationCompleted(s.Request.RequestId, s.Generated.ToArray(), reason,
            s.Fed, prefillMs, msPerToken, controlShare, s.CachedTokens)));
    }

    private void Fail(Sequence s, string reason)
    {
        Release(s);
        _pending.Add(new ServingEvent(s.Request, new GenerationFailed(s.Request.RequestId, reason)));
    }

    private void Release(Sequence s)
    {
        if (s.Cancelled) _cancelled--;
        s.Cancelled = false; // its cancellation is settled: it no longer counts in _cancelled
        _running.Remove(s);
        _runningById.Remove(s.Id);
        _waiting.Remove(s);
        _byId.Remove(s.Request.RequestId);
        if (s.Blocks.Length > 0) _pool.Release(s.Blocks);
        s.Blocks = [];
    }
}

/// <summary>One thing to tell a request's client: a <see cref="TokenGenerated"/>, a <see cref="GenerationCompleted"/>
/// or a <see cref="GenerationFailed"/>.</summary>
public sealed record ServingEvent(ServingRequest Request, IControlMessage Message)
{
    public void Deliver()
    {
        switch (Message)
        {
            case TokenGenerated t: Request.Client.OnToken(t); break;
            case GenerationCompleted c: Request.Client.OnCompleted(c); break;
            case GenerationFailed f: Request.Client.OnFailed(f); break;
        }
    }
}
