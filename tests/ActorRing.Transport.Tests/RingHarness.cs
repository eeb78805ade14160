using System.Collections.Concurrent;
using System.Text;
using ActorRing.Transport;
using Microsoft.Extensions.Logging;

namespace ActorRing.Transport.Tests;

/// <summary>Forms real loopback rings of in-process ranks and runs one thread per rank.</summary>
internal static class RingHarness
{
    public static readonly byte[] Secret = Encoding.UTF8.GetBytes("test-cluster-secret");

    /// <summary>Generous for a loaded 2-core machine, but bounded so a bug fails instead of hanging.</summary>
    public static readonly TimeSpan RankTimeout = TimeSpan.FromSeconds(60);

    public static RingOptions Options(TimeSpan? opTimeout = null, int? chunkBytes = null) => new()
    {
        ClusterSecret = Secret,
        ConnectTimeout = TimeSpan.FromSeconds(30),
        HandshakeTimeout = TimeSpan.FromSeconds(10),
        OperationTimeout = opTimeout ?? TimeSpan.FromSeconds(30),
        ChunkBytes = chunkBytes ?? 256 * 1024,
    };

    public static async Task<RingCommunicator[]> FormAsync(int worldSize, RingOptions? options = null, ILogger? logger = null)
    {
        var configs = RingConfig.ForLoopback(worldSize);
        var tasks = configs.Select(c => RingCommunicator.ConnectAsync(c, options ?? Options(), logger, CancellationToken.None)).ToArray();
        return await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
    }

    /// <summary>Runs <paramref name="body"/> on every rank at once (one thread each); rethrows the first failure.</summary>
    public static void OnAllRanks(IReadOnlyList<ICollectives> ranks, Action<ICollectives> body)
    {
        var errors = new Exception?[ranks.Count];
        var threads = ranks.Select((c, i) => new Thread(() =>
        {
            try
            {
                body(c);
            }
            catch (Exception e)
            {
                errors[i] = e;
            }
        }) { IsBackground = true, Name = $"rank-{i}" }).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var (t, i) in threads.Select((t, i) => (t, i)))
        {
            if (!t.Join(RankTimeout)) Assert.Fail($"rank {i} did not finish within {RankTimeout.TotalSeconds} s (hang)");
        }
        var failed = errors.Select((e, i) => (e, i)).Where(x => x.e is not null).ToList();
        if (failed.Count > 0)
            throw new AggregateException(failed.Select(f => new Exception($"rank {f.i}: {f.e!.Message}", f.e)));
    }

    public static void DisposeAll(IEnumerable<IDisposable> items)
    {
        foreach (var i in items) i.Dispose();
    }
}

/// <summary>Collects log lines so tests can assert that refusals are logged with their reason.</summary>
internal sealed class ListLogger : ILogger
{
    public ConcurrentQueue<string> Lines { get; } = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception,
        Func<TState, Exception?, string> formatter) => Lines.Enqueue($"{logLevel}: {formatter(state, exception)}");

    public bool Contains(string text) => Lines.Any(l => l.Contains(text, StringComparison.Ordinal));

    /// <summary>Log lines are written by another task, so wait (bounded) for the line to appear.</summary>
    public async Task<bool> WaitFor(string text)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!Contains(text) && sw.Elapsed < TimeSpan.FromSeconds(20)) await Task.Delay(20);
        return Contains(text);
    }
}
