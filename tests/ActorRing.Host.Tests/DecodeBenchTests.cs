using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>
/// <c>actorring bench decode</c> end to end, briefly (a handful of tokens): the command runs, and its JSON
/// carries the figures the README quotes. Speed itself is for the benchmark, not for a test.
/// </summary>
public sealed class DecodeBenchTests
{
    private static async Task<JsonElement> Bench(params string[] args)
    {
        using var p = new RankProcess(["bench", "decode", .. args]);
        int code = await p.WaitAsync(TimeSpan.FromSeconds(180));
        Assert.True(code == 0, $"bench decode {string.Join(' ', args)} exited with {code}\nstderr:\n{p.Stderr}");
        var lines = p.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return JsonDocument.Parse(Assert.Single(lines)).RootElement.Clone();
    }

    [Fact]
    public async Task Through_the_actor_runtime_it_reports_the_control_plane_share()
    {
        var r = await Bench("--preset", "llama-160m", "--world-size", "2", "--tokens", "4", "--runtime", "actors");
        Assert.Equal("actors", r.GetProperty("runtime").GetString());
        Assert.Equal(2, r.GetProperty("world_size").GetInt32());
        Assert.Equal(4, r.GetProperty("tokens").GetInt32());
        Assert.True(r.GetProperty("ms_per_token_mean").GetDouble() > 0);
        double share = r.GetProperty("control_plane_share").GetDouble();
        Assert.InRange(share, 0.0, 1.0);
    }

    [Fact]
    public async Task Unknown_runtime_is_refused_by_name()
    {
        using var p = new RankProcess(["bench", "decode", "--preset", "llama-160m", "--runtime", "gpu"]);
        int code = await p.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, code);
        Assert.Contains("--runtime expects threads or actors, got 'gpu'", p.Stderr);
    }
}
