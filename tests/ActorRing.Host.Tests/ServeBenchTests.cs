using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>
/// <c>actorring bench serve</c> end to end, briefly (two requests of three tokens on a real two-process cluster): the
/// weight format reaches the serve processes, and the JSON carries the step split and GC figures the serving
/// profile reads; several concurrency levels share one cluster and end with a summary of their ratios. Speed
/// itself is for the benchmark, not for a test.
/// </summary>
public sealed class ServeBenchTests
{
    [Fact]
    public async Task Quantized_cluster_reports_its_format_and_where_each_step_went()
    {
        using var p = new RankProcess(["bench", "serve", "--preset", "llama-160m", "--world-size", "2", "--concurrency", "2,1",
            "--requests", "2", "--max-tokens", "3", "--prompt-tokens", "4", "--quant", "q8_0"]);
        int code = await p.WaitAsync(TimeSpan.FromSeconds(240));
        Assert.True(code == 0, $"bench serve exited with {code}\nstderr:\n{p.Stderr}");
        var lines = p.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal(3, lines.Length); // a line per level, then the summary
        var r = lines[0];
        Assert.Equal(2, r.GetProperty("concurrency").GetInt32());
        Assert.Equal(1, lines[1].GetProperty("concurrency").GetInt32());
        Assert.Equal("q8_0", r.GetProperty("quant").GetString());
        Assert.Equal("f32", r.GetProperty("dtype").GetString());
        Assert.Equal(2, r.GetProperty("requests").GetInt32());
        Assert.True(r.GetProperty("output_tok_per_s").GetDouble() > 0);
        // Two 3-token requests take at least 3 steps (a prefill that samples, then two decodes) and at most 6.
        Assert.InRange(r.GetProperty("steps").GetInt64(), 3, 6);
        double step = r.GetProperty("step_ms_mean").GetDouble();
        double parts = r.GetProperty("compute_ms_per_step").GetDouble() + r.GetProperty("allreduce_ms_per_step").GetDouble()
            + r.GetProperty("gather_ms_per_step").GetDouble() + r.GetProperty("control_ms_per_step").GetDouble();
        Assert.True(step > 0);
        Assert.InRange(parts, step - 0.01, step + 0.01); // the four parts split the step's wall time, rounding aside
        Assert.True(r.GetProperty("allreduce_ms_per_step").GetDouble() > 0, "two ranks all-reduce every layer");
        Assert.Equal(3, r.GetProperty("gc_gen0_gen1_gen2").GetArrayLength());
        Assert.True(r.GetProperty("alloc_kb_per_step").GetDouble() > 0);

        // One round: each level's median is its one pass, and the ratios are against the first level given (2).
        var levels = lines[2].GetProperty("levels").EnumerateArray().ToArray();
        Assert.Equal([2, 1], levels.Select(l => l.GetProperty("concurrency").GetInt32()));
        Assert.Equal(1.0, levels[0].GetProperty("throughput_vs_first").GetDouble());
        double c2 = r.GetProperty("output_tok_per_s").GetDouble(), c1 = lines[1].GetProperty("output_tok_per_s").GetDouble();
        Assert.Equal(c1, levels[1].GetProperty("output_tok_per_s").GetDouble());
        Assert.Equal(Math.Round(c1 / c2, 3), levels[1].GetProperty("throughput_vs_first").GetDouble());
        Assert.Equal(Math.Round(lines[1].GetProperty("itl_ms_p50").GetDouble() / r.GetProperty("itl_ms_p50").GetDouble(), 3),
            levels[1].GetProperty("itl_vs_first").GetDouble());
    }
}
