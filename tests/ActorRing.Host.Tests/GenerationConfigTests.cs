using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>
/// <c>generate</c> with a model directory whose generation_config.json sets defaults: the bundled stories260K
/// export copied with another generation_config.json. Its EOS ids stop a generation and its sampling settings
/// apply unless the command line overrides them, or <c>--generation-config ignore</c> drops the file. generate
/// runs through serve processes at every world size, so these runs also cover serve's parsing of the flag.
/// </summary>
public sealed class GenerationConfigTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);
    private static readonly string Bundled = Path.Combine(AppContext.BaseDirectory, "models", "stories260K");
    private readonly string _dir = Directory.CreateTempSubdirectory("actorring-genconfig-").FullName;

    public GenerationConfigTests()
    {
        foreach (var f in Directory.GetFiles(Path.Combine(Bundled, "hf"))) File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static int[] GreedyIds() =>
        JsonSerializer.Deserialize<int[]>(File.ReadAllText(Path.Combine(Bundled, "expected", "greedy_bos_256.ids.json")))!;

    private void WriteGenerationConfig(string json) => File.WriteAllText(Path.Combine(_dir, "generation_config.json"), json);

    private async Task<(int[] Ids, string Finish)> Generate(params string[] args)
    {
        using var p = new RankProcess(["generate", "--model", _dir, "--prompt-ids", "1", "--max-tokens", "24", "--json", .. args]);
        int code = await p.WaitAsync(Deadline);
        Assert.True(code == 0, $"generate {string.Join(' ', args)} exited with {code}\nstderr:\n{p.Stderr}");
        var result = JsonDocument.Parse(p.Stdout.Trim()).RootElement;
        return (result.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(), result.GetProperty("finish_reason").GetString()!);
    }

    [Fact]
    public async Task Its_eos_ids_stop_generation_unless_ignored()
    {
        var greedy = GreedyIds();
        // The first greedy token that does not occur before position 5 becomes an extra EOS id.
        int at = Enumerable.Range(5, 15).First(i => Array.IndexOf(greedy, greedy[i]) == i);
        WriteGenerationConfig($$"""{"bos_token_id": 1, "eos_token_id": [2, {{greedy[at]}}]}""");

        var stopped = await Generate();
        Assert.Equal(greedy[..(at + 1)], stopped.Ids);
        Assert.Equal("stop", stopped.Finish);

        var ignored = await Generate("--generation-config", "ignore");
        Assert.Equal(greedy[..24], ignored.Ids);
        Assert.Equal("length", ignored.Finish);
    }

    [Fact]
    public async Task Its_sampling_settings_apply_unless_the_command_line_overrides_them()
    {
        WriteGenerationConfig("""{"eos_token_id": 2, "do_sample": true, "temperature": 1.5, "top_k": 50}""");
        var greedy = GreedyIds()[..24];

        var sampled = await Generate("--seed", "11");
        Assert.NotEqual(greedy, sampled.Ids); // sampled at temperature 1.5, not greedy
        Assert.Equal(sampled.Ids, (await Generate("--seed", "11")).Ids); // seeded: the same tokens again
        Assert.Equal(greedy, (await Generate("--seed", "11", "--temperature", "0")).Ids);
    }

    [Fact]
    public async Task A_bad_flag_value_and_a_bad_file_are_refused_by_name()
    {
        using (var p = new RankProcess(["generate", "--model", _dir, "--prompt-ids", "1", "--generation-config", "maybe"]))
        {
            Assert.NotEqual(0, await p.WaitAsync(Deadline));
            Assert.Contains("option --generation-config expects auto or ignore, got 'maybe'", p.Stderr);
        }
        WriteGenerationConfig("""{"top_p": 2}""");
        using (var p = new RankProcess(["generate", "--model", _dir, "--prompt-ids", "1"]))
        {
            Assert.NotEqual(0, await p.WaitAsync(Deadline));
            Assert.Contains("generation_config.json: top_p = 2 is not usable: expected a number in (0, 1]; fix the file, or pass --generation-config ignore", p.Stderr);
            Assert.DoesNotContain("   at ", p.Stderr); // a message, not a stack trace
        }
    }
}
