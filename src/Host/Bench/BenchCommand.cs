using ActorRing.Host.Cli;

namespace ActorRing.Host.Bench;

/// <summary>
/// <c>actorring bench SUBVERB ...</c>. Each benchmark registers a sub-verb here; hidden sub-verbs (the
/// per-rank halves of multi-process benchmarks) are registered too but not listed in the usage text.
/// </summary>
public static class BenchCommand
{
    /// <summary>Sub-verb to handler (arguments after the sub-verb).</summary>
    public static readonly Dictionary<string, Func<string[], Task<int>>> SubVerbs = new(StringComparer.Ordinal)
    {
        ["allreduce"] = AllReduceBench.RunAsync,
        [AllReduceBench.RankSubVerb] = AllReduceBench.RunRankAsync,
        ["decode"] = DecodeBench.RunAsync,
        ["scaling"] = ScalingBench.RunAsync,
        ["serve"] = ServeBench.RunAsync,
    };

    /// <summary>Sub-verbs a user is told about.</summary>
    public static readonly List<string> Listed = ["allreduce", "decode", "scaling", "serve"];

    public static Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0)
            throw new UsageException($"bench needs a benchmark name: {string.Join(", ", Listed)}");
        if (!SubVerbs.TryGetValue(args[0], out var handler))
            throw new UsageException($"unknown benchmark '{args[0]}'; available: {string.Join(", ", Listed)}");
        return handler(args[1..]);
    }
}
