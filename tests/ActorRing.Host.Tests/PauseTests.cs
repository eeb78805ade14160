using System.Diagnostics;
using System.Text.RegularExpressions;

namespace ActorRing.Host.Tests;

/// <summary>A rank that is paused (SIGSTOP) long enough to be declared lost comes back after SIGCONT.</summary>
public sealed class PauseTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    /// <summary>Greedy, 16 tokens of the bundled model after "Once upon a time" (as RecoveryTests).</summary>
    private const string Expected = ", there was a little girl named Lily. She loved to play";

    [Fact]
    public async Task A_worker_paused_for_15_s_rejoins_after_SIGCONT_and_the_next_prompt_is_answered_exactly()
    {
        using var ring = new LoopbackRing(2);
        await ring.RunAsync(async () =>
        {
            var master = ring.Serve(0, ["--interactive", "--max-tokens", "16", "--verbose"], redirectStdin: true);
            var worker = ring.Serve(1, ["--verbose"]);
            await master.StandardInput.WriteLineAsync("Once upon a time");
            await master.StandardInput.FlushAsync();
            await master.WaitForStdoutLinesAsync(1, Deadline);

            worker.Signal("STOP");
            try
            {
                // Rank 0 declares the silent rank lost (DeathWatch), which used to quarantine it for good.
                await master.WaitForLogAsync("is gone (connection lost or process stopped); waiting for it to register again", TimeSpan.FromSeconds(30));
                await Task.Delay(TimeSpan.FromSeconds(15));
            }
            finally
            {
                worker.Signal("CONT");
            }
            var resumed = Stopwatch.StartNew();
            await master.StandardInput.WriteLineAsync("Once upon a time");
            await master.StandardInput.FlushAsync();
            await master.WaitForStdoutLinesAsync(2, Deadline);
            // Rejoining takes a failure-detector period and a ring formation, not the 600 s ready timeout.
            Assert.True(resumed.Elapsed < TimeSpan.FromSeconds(40), $"the answer after SIGCONT took {resumed.Elapsed.TotalSeconds:0} s");
            master.StandardInput.Close();
            Assert.Equal(0, await master.WaitAsync(Deadline));

            var lines = master.Stdout.Split('\n');
            Assert.Equal(Expected, lines[0]);
            Assert.Equal(Expected, lines[1]);
            // Registered at start and once after SIGCONT. Under heavy load (seen once in a full CI run) Akka.Remote
            // found the system-message buffers of the old association out of step only after that rejoin, dropped the
            // association (a marker of 2 s, see hocon/actorring.hocon) and the worker registered a third time, 5 s later.
            // The answers were exact either way; what must not happen is no rejoin, or a loop of them.
            int registrations = Regex.Matches(master.Stderr, "rank 1/2 registered from").Count;
            Assert.InRange(registrations, 2, 3);
            Assert.Contains("stopped answering heartbeats; reported as terminated, not quarantined, so it can rejoin", master.Stderr);
            if (registrations == 2) Assert.DoesNotContain("uarantined", worker.Stderr.Replace("not quarantined", ""));
            // The worker kept its weights: it loaded its shard once.
            Assert.Single(Regex.Matches(worker.Stderr, "rank 1/2: loading shard"));
        });
    }
}
