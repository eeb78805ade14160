using Prometheus;

namespace ActorRing.Host.Generation;

/// <summary>
/// The serving metrics, in a registry of their own (so two services in one process, as in tests, never share
/// counters). Names follow Prometheus conventions and vLLM's where one exists (prompt/generation tokens, time to
/// first token, time per output token). The coordinator reports one mean decode step per request, split into the
/// ranks' compute (their all-reduces included: the coordinator does not see them apart) and the control plane.
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

    public GenerationMetrics()
    {
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
        foreach (var outcome in (string[])["stop", "length", "cancelled", "invalid", "unavailable"]) _requests.WithLabels(outcome);
        _prefixCache = new PrefixCacheCounters(f);
    }

    public CollectorRegistry Registry { get; }

    /// <summary>Refreshes the gauges that are read from elsewhere (the queue, the cluster) just before each scrape.</summary>
    public void UpdateBeforeScrape(Func<CancellationToken, Task<(int Running, int Waiting, int RanksReady, int WorldSize)>> read) =>
        Registry.AddBeforeCollectCallback(async ct =>
        {
            var (running, waiting, ranks, world) = await read(ct);
            _running.Set(running);
            _waiting.Set(waiting);
            _ranksReady.Set(ranks);
            _worldSize.Set(world);
        });

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
