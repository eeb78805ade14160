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
    /// <param name="shared">Options every rank gets (the model, its formats, the step loop's limits).</param>
    /// <param name="request">Options only rank 0 needs: the request's sampling and output format.</param>
    public static async Task<int> RunAsync(IEnumerable<string> shared, IEnumerable<string> request, int worldSize,
        IReadOnlyList<int> promptIds, int threadsPerRank)
    {
        string[] everyRank = [.. shared, "--threads", threadsPerRank.ToString(CultureInfo.InvariantCulture), "--quiet"];
        string[] rank0 = [.. request, "--prompt-ids", string.Join(',', promptIds)];
        using var launcher = RankProcessLauncher.Start(worldSize,
            rank => ["serve", .. everyRank, .. (rank == 0 ? rank0 : []), .. RankProcessLauncher.CoreArguments(rank, worldSize, threadsPerRank)],
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
}
