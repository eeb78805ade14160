using System.Runtime.ExceptionServices;

namespace ActorRing.Model;

/// <summary>
/// Runs one body per rank, each on its own dedicated thread (TorchSharp dispose scopes, grad mode and
/// libtorch's thread count are per thread), and returns the results in rank order. If a rank fails, the
/// first failure is rethrown after every thread has ended; a collective deadline keeps the others from
/// waiting forever on the failed rank.
/// </summary>
public static class RankThreads
{
    public static T[] Run<T>(int worldSize, Func<int, T> body, string name = "rank")
    {
        var results = new T[worldSize];
        var errors = new Exception?[worldSize];
        var threads = new Thread[worldSize];
        for (int r = 0; r < worldSize; r++)
        {
            int rank = r;
            threads[r] = new Thread(() =>
            {
                try { results[rank] = body(rank); }
                catch (Exception e) { errors[rank] = e; }
            }, 16 * 1024 * 1024)
            { Name = $"{name}-{rank}", IsBackground = true };
            threads[r].Start();
        }
        foreach (var t in threads) t.Join();
        // Prefer a root cause over the collective timeouts it caused on the other ranks.
        var first = errors.FirstOrDefault(e => e is not null and not Transport.CollectiveException) ?? errors.FirstOrDefault(e => e is not null);
        if (first is not null) ExceptionDispatchInfo.Capture(first).Throw();
        return results;
    }
}
