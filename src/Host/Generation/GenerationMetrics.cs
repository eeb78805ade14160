using ActorRing.Actors.Serving;
using Prometheus;

namespace ActorRing.Host.Generation;

/// <summary>
/// The serving metrics, in a registry of their own (so two services in one process, as in tests, never share
/// counters). Names follow Prometheus conventions and vLLM's where one exists (prompt/generation tokens, time to
/// first token, time per output token). The coordinator reports one mean decode step per request, split into the
/// ranks' compute (their all-reduces included: the coordinator does not see them apart) and the control plane;
/// the step loop's own totals (<see cref="ServingPort"/>) split every step into compute, all-reduce, gather and
/// control, and say how full the KV cache is and which requests run or wait in the engine.
/// </summary>
public sealed class GenerationMetrics
{
    private readonly Counter _requests;
    private readonly Counter _promptTokens;
    private readonly Counter _generationTokens;
    private readonly Histogram _timeToFirstToken;
    private readonly Histogram _timePerOutputToken;
    private readonly Histogram _queueTime;
    private readonly Histogram _prefill;
    private readonly Histogram _step;
    private readonly Gauge _running;
    private readonly Gauge _waiting;
    private readonly Gauge _ranksReady;
    private readonly Gauge _worldSize;
    private readonly ServingPort? _engine;
    private readonly Gauge _kvBlocksUsed;
    private readonly Gauge _kvBlocksTotal;
    private readonly Gauge _kvUsage;
    private readonly Counter _steps;
    private readonly Counter _stepSeconds;

    /// <param name="engine">Rank 0's queue to its step loop, whose counters the engine gauges read; without
    /// one they stay 0 and running/waiting count the front end's queue only.</param>
    public GenerationMetrics(ServingPort? engine = null)
    {
        _engine = engine;
        Registry = Metrics.NewCustomRegistry();
        var f = Metrics.WithCustomRegistry(Registry);
        var seconds = Histogram.ExponentialBuckets(0.001, 2, 18); // 1 ms .. 131 s
        _requests = f.CreateCounter("actorring_requests_total",
            "Finished requests by outcome: stop, length, cancelled (client went away), invalid, unavailable (a rank was down).",
            new CounterConfiguration { LabelNames = ["outcome"] });
        _promptTokens = f.CreateCounter("actorring_prompt_tokens_total", "Prompt tokens of the requests that ran.");
        _generationTokens = f.CreateCounter("actorring_generation_tokens_total", "Generated tokens.");
        _timeToFirstToken = f.CreateHistogram("actorring_time_to_first_token_seconds",
            "From the request's turn in the queue to its first token (the prefill).", new HistogramConfiguration { Buckets = seconds });
        _timePerOutputToken = f.CreateHistogram("actorring_time_per_output_token_seconds",
            "Mean decode time per generated token after the first, per request.", new HistogramConfiguration { Buckets = seconds });
        _queueTime = f.CreateHistogram("actorring_request_queue_seconds", "Time a request waited behind others.",
            new HistogramConfiguration { Buckets = seconds });
        _prefill = f.CreateHistogram("actorring_prefill_seconds", "Prefill step time, as the coordinator measured it.",
            new HistogramConfiguration { Buckets = seconds });
        _step = f.CreateHistogram("actorring_decode_step_seconds",
            "Mean decode step time per request, split by part: compute (the ranks' forward pass, all-reduces included) and control (actor messaging and scheduling).",
            new HistogramConfiguration { Buckets = seconds, LabelNames = ["part"] });
        _running = f.CreateGauge("actorring_requests_running", "Requests being generated.");
        _waiting = f.CreateGauge("actorring_requests_waiting", "Requests queued behind the running ones.");
        _ranksReady = f.CreateGauge("actorring_ranks_ready", "Ranks registered with the coordinator (all of them when the cluster is ready).");
        _worldSize = f.CreateGauge("actorring_world_size", "Ranks the model is split over.");
        _kvBlocksUsed = f.CreateGauge("actorring_kv_cache_blocks_used", "KV cache blocks reserved by the requests the engine has admitted.");
        _kvBlocksTotal = f.CreateGauge("actorring_kv_cache_blocks_total", "KV cache blocks in all (--kv-cache-tokens / 16 positions per block).");
        _kvUsage = f.CreateGauge("actorring_kv_cache_usage_ratio", "KV cache blocks used / total, 0 to 1.");
        _steps = f.CreateCounter("actorring_steps_total", "Steps (batched forward passes) rank 0's step loop ran.");
        _stepSeconds = f.CreateCounter("actorring_step_seconds_total",
            "Wall time of the steps, by part: compute (rank 0's forward pass), all_reduce (its all-reduces, where waiting for a slower rank shows), gather (the logits to rank 0) and control (planning, sampling, the plan's broadcast, delivering tokens). rate(part) / rate(actorring_steps_total) is the mean step's split.",
            new CounterConfiguration { LabelNames = ["part"] });
        foreach (var part in (string[])["compute", "all_reduce", "gather", "control"]) _stepSeconds.WithLabels(part);
        foreach (var outcome in (string[])["stop", "length", "cancelled", "invalid", "unavailable"]) _requests.WithLabels(outcome);
        _prefixCache = new PrefixCacheCounters(f);
    }

    public CollectorRegistry Registry { get; }

    /// <summary>Refreshes the gauges that are read from elsewhere (the queue, the cluster) just before each scrape.</summary>
    public void UpdateBeforeScrape(Func<CancellationToken, Task<(int Running, int Waiting, int RanksReady, int WorldSize)>> read) =>
        Registry.AddBeforeCollectCallback(async ct =>
        {
            var (running, waiting, ranks, world) = await read(ct);
            if (_engine is { } engine)
            {
                // The engine knows better than the front end: what it decodes, and what waits for room in it.
                var load = engine.Load;
                running = load.Running;
                waiting += load.Waiting;
                ReadEngine(engine);
            }
            _running.Set(running);
            _waiting.Set(waiting);
            _ranksReady.Set(ranks);
            _worldSize.Set(world);
        });

    private void ReadEngine(ServingPort engine)
    {
        var (used, total) = engine.KvCache;
        _kvBlocksUsed.Set(used);
        _kvBlocksTotal.Set(total);
        _kvUsage.Set(total > 0 ? (double)used / total : 0);
        var steps = engine.Steps;
        _steps.IncTo(steps.Steps);
        _stepSeconds.WithLabels("compute").IncTo(steps.ComputeMs / 1000);
        _stepSeconds.WithLabels("all_reduce").IncTo(steps.AllReduceMs / 1000);
        _stepSeconds.WithLabels("gather").IncTo(steps.GatherMs / 1000);
        _stepSeconds.WithLabels("control").IncTo(steps.ControlMs / 1000);
    }

    public void RequestStarted(int promptTokens) => _promptTokens.Inc(promptTokens);

    public void TokenGenerated() => _generationTokens.Inc();

    public void RequestEnded(string outcome) => _requests.WithLabels(outcome).Inc();

    public void RequestTimed(GenerationTimings t, int generatedTokens)
    {
        _queueTime.Observe(t.QueuedMs / 1000);
        if (generatedTokens > 0) _timeToFirstToken.Observe(t.FirstTokenMs / 1000);
        _prefill.Observe(t.PrefillMs / 1000);
        if (generatedTokens > 1)
        {
            _timePerOutputToken.Observe(t.MsPerToken / 1000);
            _step.WithLabels("compute").Observe(t.MsPerToken * (1 - t.ControlShare) / 1000);
            _step.WithLabels("control").Observe(t.MsPerToken * t.ControlShare / 1000);
        }
    }

    // Prefix cache: counted in prompt tokens, as vLLM's prefix_cache_queries/hits, so the hit rate is hits / queries.
    private sealed class PrefixCacheCounters(IMetricFactory f)
    {
        public readonly Counter Queries = f.CreateCounter("actorring_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.");
        public readonly Counter Hits = f.CreateCounter("actorring_prefix_cache_hits_total",
            "Prompt tokens found in the prefix cache, whose prefill was skipped (hit rate: hits / queries).");
    }

    private readonly PrefixCacheCounters _prefixCache;

    /// <summary>A finished request's prompt: <paramref name="promptTokens"/> looked up, <paramref name="cachedTokens"/>
    /// of them found in the prefix cache (their prefill skipped).</summary>
    public void PrefixCacheLookup(int promptTokens, int cachedTokens)
    {
        _prefixCache.Queries.Inc(promptTokens);
        _prefixCache.Hits.Inc(cachedTokens);
    }
}
