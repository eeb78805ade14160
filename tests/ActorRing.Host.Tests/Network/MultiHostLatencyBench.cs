using System.Globalization;
using System.Text;
using Xunit.Abstractions;

namespace ActorRing.Host.Tests.Network;

/// <summary>
/// Decode step time against added link latency, on the namespace cluster of <see cref="MultiHostTests"/>. A
/// measurement, not a check, so it runs only when asked:
/// <code>ACTORRING_NETNS_BENCH=1 dotnet test tests/ActorRing.Host.Tests -c Release --filter MultiHostLatencyBench --logger "console;verbosity=detailed"</code>
/// Each configuration runs <see cref="Rounds"/> times, the configurations in turn within a round, so every
/// row compares runs minutes apart at most; the table goes to the test output and to
/// <c>$TMPDIR/actorring-netns-bench.md</c>.
/// </summary>
public sealed class MultiHostLatencyBench(ITestOutputHelper output)
{
    private const int Rounds = 3;
    private const int Tokens = 64;

    /// <param name="Rank0Args">The request, on rank 0.</param>
    /// <param name="Shared">What every rank gets (the model).</param>
    private sealed record Case(string Model, string[] Rank0Args, string[] Shared, int Layers, string Link, LinkShape? Shape);

    [SkippableFact]
    public async Task Decode_step_time_against_added_latency()
    {
        Skip.If(Environment.GetEnvironmentVariable("ACTORRING_NETNS_BENCH") != "1", "a measurement: set ACTORRING_NETNS_BENCH=1 to run it");
        var (hosts, reason) = NamespaceCluster.TryCreate(2, "1gbit");
        Skip.If(hosts is null, reason);
        static TimeSpan ms(double milliseconds) => TimeSpan.FromMilliseconds(milliseconds);
        string[] request = ["--prompt-ids", "1", "--max-tokens", Tokens.ToString(), "--json"];
        string[] stories = ["--context", "512"];
        string[] llama = ["--preset", "llama-160m", "--context", "512"];
        Case[] cases =
        [
            new("stories260K", request, stories, 5, "direct (no relay)", null),
            new("stories260K", request, stories, 5, "relay, 0 ms", LinkShape.None),
            new("stories260K", request, stories, 5, "relay, 1 ms", new LinkShape(ms(1))),
            new("stories260K", request, stories, 5, "relay, 2 ms ± 1 ms", new LinkShape(ms(1), ms(2))),
            new("stories260K", request, stories, 5, "relay, 1 ms, 0.5% loss", new LinkShape(ms(1), LossRate: 0.005)),
            new("llama-160m", request, llama, 12, "relay, 0 ms", LinkShape.None),
            new("llama-160m", request, llama, 12, "relay, 1 ms", new LinkShape(ms(1))),
        ];
        var times = cases.Select(_ => new List<double>()).ToArray();
        var bytes = new long[cases.Length];
        string dir = Directory.CreateTempSubdirectory("actorring-netns-bench-").FullName;
        try
        {
            using (hosts)
            {
                for (int round = 0; round < Rounds; round++)
                {
                    for (int c = 0; c < cases.Length; c++)
                    {
                        var (result, relayed) = await MultiHostTests.RunAsync(hosts!, cases[c].Shape, cases[c].Rank0Args, cases[c].Shared, dir);
                        double msPerToken = result.GetProperty("ms_per_token").GetDouble();
                        times[c].Add(msPerToken);
                        bytes[c] = relayed;
                        output.WriteLine($"round {round + 1}: {cases[c].Model}, {cases[c].Link}: {msPerToken:0.00} ms/token");
                    }
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        // Per decode step at N = 2: the plan goes to rank 1 (1 hop), each layer's two all-reduces exchange full
        // vectors with the neighbour (1 hop each, both ways at once), the logit slice comes back (1 hop): (2L + 2)
        // one-way delays. The bytes term is what the relays carried per token over the 1 Gbit/s cap.
        var table = new StringBuilder();
        table.AppendLine("| model | link | ms/token per round | added vs relay 0 ms | predicted (2L+2)·d + bytes/bandwidth | relayed bytes/token |");
        table.AppendLine("|---|---|---|---|---|---|");
        for (int c = 0; c < cases.Length; c++)
        {
            var k = cases[c];
            var baseline = Array.FindIndex(cases, x => x.Model == k.Model && x.Shape == LinkShape.None);
            double median = Median(times[c]);
            double perToken = bytes[c] / (double)Tokens;
            double meanDelay = k.Shape is null ? 0 : k.Shape.Delay.TotalMilliseconds + k.Shape.Jitter.TotalMilliseconds / 2
                + k.Shape.LossRate * k.Shape.RetransmitDelayOrDefault.TotalMilliseconds;
            double predicted = (2 * k.Layers + 2) * meanDelay + perToken * 8 / 1e9 * 1e3;
            string added = k.Shape is null || ReferenceEquals(k.Shape, LinkShape.None) ? "–" : $"{median - Median(times[baseline]):0.00} ms";
            table.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {k.Model} (L={k.Layers}) | {k.Link} | {string.Join(", ", times[c].Select(t => t.ToString("0.00", CultureInfo.InvariantCulture)))} | {added} | {(k.Shape is null ? "–" : $"{predicted:0.00} ms")} | {(k.Shape is null ? "–" : $"{perToken:0}")} |"));
        }
        output.WriteLine(table.ToString());
        File.WriteAllText(Path.Combine(Path.GetTempPath(), "actorring-netns-bench.md"), table.ToString());
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
