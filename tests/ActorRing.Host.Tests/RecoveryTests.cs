using System.Diagnostics;
using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>A worker that dies and comes back: rank 0 notices, keeps running, and serves again once the ring re-forms.</summary>
public sealed class RecoveryTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static async Task WaitForLinesAsync(RankProcess p, int count, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (p.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length < count)
        {
            if (clock.Elapsed > timeout || p.HasExited)
                throw new TimeoutException($"expected {count} answer line(s) within {timeout.TotalSeconds:0} s\nstdout:\n{p.Stdout}\nstderr:\n{p.Stderr}");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task A_killed_worker_is_detected_and_a_restarted_one_rejoins_without_restarting_rank_0()
    {
        string expected;
        using (var reference = new RankProcess(["generate", "--prompt", "Once upon a time", "--max-tokens", "24", "--json"]))
        {
            Assert.Equal(0, await reference.WaitAsync(Deadline));
            expected = JsonDocument.Parse(reference.Stdout).RootElement.GetProperty("text").GetString()!.Replace("\n", "\\n");
        }

        using var ring = new LoopbackRing(2);
        await ring.RunAsync(async () =>
        {
            var master = ring.Serve(0, ["--interactive", "--max-tokens", "24"], redirectStdin: true);
            var worker = ring.Serve(1);
            await master.StandardInput.WriteLineAsync("Once upon a time");
            await master.StandardInput.FlushAsync();
            await WaitForLinesAsync(master, 1, Deadline);

            worker.Kill(); // SIGKILL: no goodbye, only the failure detector can tell
            await master.WaitForLogAsync("rank 1 (akka.tcp://actorring@127.0.0.1:", Deadline);
            Assert.Contains("is gone (connection lost or process stopped); waiting for it to register again", master.Stderr);

            ring.Serve(1);
            // Every turn sends the whole conversation (nothing is kept in the ranks' caches between requests), so
            // the new rank 1 serves it like the old one; a fresh conversation gives the first answer again.
            await master.StandardInput.WriteLineAsync("/reset");
            await master.StandardInput.WriteLineAsync("Once upon a time");
            await master.StandardInput.FlushAsync();
            await WaitForLinesAsync(master, 2, Deadline);
            master.StandardInput.Close();
            Assert.Equal(0, await master.WaitAsync(Deadline));

            var lines = master.Stdout.Split('\n');
            Assert.Equal(expected, lines[0]);
            Assert.Equal("", lines[1]); // /reset
            Assert.Equal(expected, lines[2]);
        });
    }

    [Fact]
    public async Task Sigterm_stops_a_worker_cleanly_and_rank_0_hears_it_at_once()
    {
        using var ring = new LoopbackRing(2);
        await ring.RunAsync(async () =>
        {
            var master = ring.Serve(0, ["--http-port", "0"]); // any free port for the API
            var worker = ring.Serve(1);
            await master.WaitForLogAsync("cluster ready: 2 rank(s)", Deadline);
            worker.Terminate();
            Assert.Equal(0, await worker.WaitAsync(TimeSpan.FromSeconds(20)));
            // The worker said goodbye (no failure-detector delay) and closed its ring sockets on the way out.
            await master.WaitForLogAsync("rank 1 is shutting down: the process is stopping; waiting for it to register again", TimeSpan.FromSeconds(10));
            await master.WaitForLogAsync("rank 0: closing the ring", TimeSpan.FromSeconds(10));

            master.Terminate();
            Assert.Equal(0, await master.WaitAsync(TimeSpan.FromSeconds(20)));
        });
    }

    [Fact]
    public async Task Workers_outlive_rank_0_and_serve_its_next_incarnation_without_reloading()
    {
        using var ring = new LoopbackRing(2);
        await ring.RunAsync(async () =>
        {
            var worker = ring.Serve(1);
            var answers = new List<string>();
            for (int run = 0; run < 2; run++)
            {
                var master = ring.Serve(0, ["--interactive", "--max-tokens", "16"], redirectStdin: true);
                await master.StandardInput.WriteLineAsync("Once upon a time");
                master.StandardInput.Close(); // end of input: rank 0 answers and exits, the worker stays
                Assert.Equal(0, await master.WaitAsync(Deadline));
                answers.Add(master.Stdout.Split('\n')[0]);
                // Rank 0 said it was leaving: the worker went back to dialing without a failure to report.
                await worker.WaitForLogAsync("rank 1/2: dialing the coordinator", Deadline, occurrences: run + 2);
                Assert.False(worker.HasExited);
            }
            Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(worker.Stderr, "rank 1: rank 0 is leaving \\(its process is stopping\\)").Count);
            // An ordered departure: no ring failure, no lost coordinator, no Akka association warnings.
            Assert.DoesNotMatch(" (fail|warn): ", worker.Stderr);
            Assert.Equal(", there was a little girl named Lily. She loved to play", answers[0]); // greedy, 16 tokens
            Assert.Equal(answers[0], answers[1]);
            // The second rank 0 found the worker's shard already loaded.
            Assert.Single(System.Text.RegularExpressions.Regex.Matches(worker.Stderr, "rank 1/2: loading shard"));
        });
    }
}
