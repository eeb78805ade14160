using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>
/// <c>actorring bench decode</c> end to end, briefly (a handful of tokens): the command runs, and its JSON
/// carries the figures the README quotes. Speed itself is for the benchmark, not for a test.
/// </summary>
public sealed class DecodeBenchTests
{
    /// <summary>Runs <c>actorring bench ARGS</c>; returns its one JSON line and its stderr.</summary>
    private static async Task<(JsonElement Json, string Stderr)> Bench(params string[] args)
    {
        using var p = new RankProcess(["bench", .. args]);
        int code = await p.WaitAsync(TimeSpan.FromSeconds(180));
        Assert.True(code == 0, $"bench {string.Join(' ', args)} exited with {code}\nstderr:\n{p.Stderr}");
        var lines = p.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return (JsonDocument.Parse(Assert.Single(lines)).RootElement.Clone(), p.Stderr);
    }

    private static async Task AssertRefused(string message, params string[] args)
    {
        using var p = new RankProcess(["bench", .. args]);
        int code = await p.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, code);
        Assert.Contains(message, p.Stderr);
    }

    [Fact]
    public async Task Through_the_actor_runtime_it_reports_the_control_plane_share()
    {
        var (r, _) = await Bench("decode", "--preset", "llama-160m", "--world-size", "2", "--tokens", "4", "--runtime", "actors");
        Assert.Equal("actors", r.GetProperty("runtime").GetString());
        Assert.Equal(2, r.GetProperty("world_size").GetInt32());
        Assert.Equal(4, r.GetProperty("tokens").GetInt32());
        Assert.True(r.GetProperty("ms_per_token_mean").GetDouble() > 0);
        double share = r.GetProperty("control_plane_share").GetDouble();
        Assert.InRange(share, 0.0, 1.0);
    }

    [Fact]
    public async Task A_batch_decodes_that_many_sequences_per_step()
    {
        var (r, _) = await Bench("decode", "--preset", "llama-160m", "--tokens", "2", "--batch", "3");
        Assert.Equal(3, r.GetProperty("batch").GetInt32());
        double step = r.GetProperty("ms_per_step_median").GetDouble();
        Assert.True(step > 0);
        // Three tokens a step: throughput and the per-token figure both count every sequence.
        Assert.Equal(3000 / step, r.GetProperty("tok_per_s").GetDouble(), 3000 / step * 0.01);
        Assert.Equal(step / 3, r.GetProperty("ms_per_token_median").GetDouble(), 0.002);
        Assert.Contains(r.GetProperty("kernels").GetString(), new[] { "avx512", "avx2" });
        Assert.True(r.GetProperty("cpu_ms_per_step_median").GetDouble() > 0);
    }

    [Fact]
    public Task A_batch_through_the_actor_runtime_is_refused() =>
        AssertRefused("--batch 4 is measured with --runtime threads", "decode", "--preset", "llama-160m", "--batch", "4", "--runtime", "actors");

    [Fact]
    public async Task Scaling_compares_every_configuration_round_by_round()
    {
        var (r, stderr) = await Bench("scaling", "--preset", "llama-160m", "--rounds", "2", "--tokens", "2");
        var ms = r.GetProperty("ms_per_token_median");
        foreach (var name in new[] { "1x1", "2x1", "1x2" }) Assert.True(ms.GetProperty(name).GetDouble() > 0, name);
        // Each speed-up is 1x1's time over the other's, so the median over two rounds lies between their extremes.
        foreach (var name in new[] { "2x1", "1x2" })
        {
            double median = r.GetProperty("speedup_median").GetProperty(name).GetDouble();
            Assert.InRange(median, 0.05, r.GetProperty("speedup_best").GetProperty(name).GetDouble());
        }
        Assert.Contains("round 2/2: 1x1 ", stderr); // progress, one line a round
    }

    [Fact]
    public Task Scaling_refuses_a_world_size_the_preset_cannot_be_split_over() =>
        AssertRefused("12 attention heads cannot be split over 5 ranks", "scaling", "--preset", "llama-160m", "--world-size", "5");

    [Fact]
    public Task Unknown_runtime_is_refused_by_name() =>
        AssertRefused("--runtime expects threads or actors, got 'gpu'", "decode", "--preset", "llama-160m", "--runtime", "gpu");
}
