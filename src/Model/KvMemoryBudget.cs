namespace ActorRing.Model;

/// <summary>
/// How a rank sizes its KV cache from free memory when no fixed size is given: <paramref name="Share"/> of
/// MemAvailable as read once its weights are loaded, but at most <paramref name="MaxTokens"/> positions (what
/// the scheduler could ever reserve, e.g. --max-batch full contexts). Below <paramref name="MinTokens"/> (one
/// sequence of the full context) loading fails with the figures. Ranks may get different sizes (their free
/// memory differs); the step loop uses the smallest (see the serving loop's start). <paramref name="Announce"/>:
/// say the size reached through the load's log (a server's start-up; not the quiet ranks of a one-shot run).
/// </summary>
public sealed record KvMemoryBudget(double Share, int MaxTokens, int MinTokens, bool Announce = true)
{
    /// <summary>The default share: half of what is free, leaving the rest to the OS, other processes and activations.</summary>
    public const double DefaultShare = 0.5;

    /// <summary>
    /// Positions the cache gets at <paramref name="bytesPerPosition"/> bytes each, and a sentence that says how
    /// the figure was reached.
    /// </summary>
    /// <exception cref="ModelLoadException">Free memory is unknown, or too small for one full-context sequence.</exception>
    public (int Tokens, string Description) Resolve(long bytesPerPosition, long? availableBytes)
    {
        if (Share is <= 0 or > 1) throw new ArgumentOutOfRangeException(nameof(Share), Share, "the KV cache's share of free memory must be in (0, 1]");
        if (availableBytes is not long available)
            throw new ModelLoadException($"cannot read free memory (MemAvailable in /proc/meminfo) to size the KV cache; give --kv-cache-tokens (at least {MinTokens}, one sequence of the full context)");
        long fit = (long)(Share * available / bytesPerPosition);
        int tokens = (int)Math.Min(fit, MaxTokens);
        string figures = $"{Share:0.##} of MemAvailable {Mib(available)} MiB holds {fit} positions at {bytesPerPosition} bytes each";
        if (tokens < MinTokens)
            throw new ModelLoadException($"the KV cache is too small for one sequence of the full context: {figures}, and the context is {MinTokens} positions; free memory, load with a shorter --context, or give --kv-cache-tokens {MinTokens} or more");
        return (tokens, tokens < fit
            ? $"{tokens} positions ({Mib((long)tokens * bytesPerPosition)} MiB; {figures}, capped at {MaxTokens})"
            : $"{tokens} positions ({Mib((long)tokens * bytesPerPosition)} MiB; {figures})");
    }

    /// <summary>MemAvailable from /proc/meminfo in bytes, or null where there is none (not Linux).</summary>
    public static long? ReadAvailableBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture) * 1024; // kB
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    private static long Mib(long bytes) => bytes >> 20;
}
