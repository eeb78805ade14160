using ActorRing.Model;
using System.Globalization;
using ActorRing.Host.Cli;

namespace ActorRing.Host.Serve;

/// <summary>
/// <c>generate --world-size N</c> (N &gt; 1) as a real cluster: N <c>serve</c> processes on loopback, with
/// generated ring files and a random secret (<see cref="RankProcessLauncher"/>). Rank 0 runs the request in
/// one-shot mode and prints exactly what the in-process generate prints; its stdout is relayed here, and every
/// rank exits when it is done. The launcher kills the whole tree if this process is interrupted or killed.
/// </summary>
internal static class MultiProcessGenerate
{
    /// <summary>generate options that only rank 0 needs (the request); the rest shape every rank's shard.</summary>
    private static readonly HashSet<string> RequestOptions = new(StringComparer.Ordinal)
    {
        "prompt", "prompt-ids", "max-tokens", "temperature", "top-k", "top-p", "repetition-penalty", "seed", "stop", "json",
    };

    private static readonly HashSet<string> Dropped = new(StringComparer.Ordinal) { "world-size", "threads", "prompt", "prompt-ids" };

    private static readonly string[] ValuelessFlags = ["json", "quant-lm-head"];

    public static async Task<int> RunAsync(string[] generateArgs, int worldSize, IReadOnlyList<int> promptIds, int threadsPerRank)
    {
        var shared = new List<string>();
        var request = new List<string>();
        foreach (var (name, tokens) in Options(generateArgs))
        {
            if (Dropped.Contains(name)) continue;
            (RequestOptions.Contains(name) ? request : shared).AddRange(tokens);
        }
        shared.AddRange(["--threads", threadsPerRank.ToString(CultureInfo.InvariantCulture), "--quiet"]);
        request.AddRange(["--prompt-ids", string.Join(',', promptIds)]);

        using var launcher = RankProcessLauncher.Start(worldSize,
            rank => ["serve", .. shared, .. (rank == 0 ? request : []), .. RankProcessLauncher.CoreArguments(rank, worldSize, threadsPerRank)],
            onOutput: (rank, isStdErr, line) => Console.Error.WriteLine(isStdErr && rank == 0 ? line : $"[rank {rank}] {line}"),
            rank0OwnsConsole: true);
        // Every rank stops by itself once rank 0 has printed the result; the deadline only guards against a hang.
        var codes = await launcher.WaitForExitAsync(TimeSpan.FromHours(2), TimeSpan.FromSeconds(15));
        if (codes[0] != 0) return codes[0] < 0 ? 1 : codes[0];
        var failed = Enumerable.Range(1, worldSize - 1).Where(r => codes[r] != 0).ToList();
        if (failed.Count > 0)
        {
            Console.Error.WriteLine($"warning: rank(s) {string.Join(", ", failed)} did not exit cleanly (codes {string.Join(", ", failed.Select(r => codes[r]))})");
        }
        return 0;
    }


    /// <summary>Splits generate's arguments into options (name and the tokens that spell it).</summary>
    private static IEnumerable<(string Name, string[] Tokens)> Options(string[] args)
    {
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
                throw new UsageException($"unexpected argument '{arg}'");
            string name = arg[2..];
            int eq = name.IndexOf('=');
            if (eq >= 0)
            {
                yield return (name[..eq], [arg]);
            }
            else if (Array.IndexOf(ValuelessFlags, name) >= 0 || i + 1 >= args.Length)
            {
                yield return (name, [arg]);
            }
            else
            {
                yield return (name, [arg, args[++i]]);
            }
        }
    }
}
