using System.Diagnostics;
using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>
/// <c>actorring generate --world-size N</c> with real processes: N <c>serve</c> ranks on loopback, the request
/// through the coordinator, the bundled stories260K model, greedy.
/// </summary>
public sealed class MultiProcessGenerateTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);

    private static string Expected(string file) =>
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "models", "stories260K", "expected", file));

    private static int[] ExpectedIds() => JsonSerializer.Deserialize<int[]>(Expected("greedy_bos_256.ids.json"))!;

    private static async Task<JsonElement> GenerateJson(params string[] args)
    {
        using var p = new RankProcess(["generate", .. args, "--json"]);
        int code = await p.WaitAsync(Deadline);
        Assert.True(code == 0, $"generate {string.Join(' ', args)} exited with {code}\nstderr:\n{p.Stderr}");
        var lines = p.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines); // stdout carries the result only; logs go to stderr
        return JsonDocument.Parse(lines[0]).RootElement.Clone();
    }

    private static int[] Ids(JsonElement result, string name = "ids") =>
        result.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public async Task Greedy_from_BOS_reproduces_the_published_stories260K_text(int worldSize)
    {
        var result = await GenerateJson("--world-size", worldSize.ToString(), "--prompt-ids", "1");
        Assert.Equal(worldSize, result.GetProperty("world_size").GetInt32());
        Assert.Equal(ExpectedIds(), Ids(result));
        Assert.Equal(Expected("greedy_bos_256.txt").TrimEnd('\n'), result.GetProperty("text").GetString()!.TrimEnd('\n'));
    }

    [Fact]
    public async Task Bf16_over_two_processes_gives_world_size_1s_tokens()
    {
        // "bfloat16" is generate's alias for bf16; every serve rank must accept what generate passes on.
        var two = await GenerateJson("--world-size", "2", "--dtype", "bfloat16", "--prompt", "Once upon a time", "--max-tokens", "16");
        var one = await GenerateJson("--world-size", "1", "--dtype", "bf16", "--prompt", "Once upon a time", "--max-tokens", "16");
        Assert.Equal(16, Ids(one).Length);
        Assert.Equal(Ids(one), Ids(two));
    }

    [Fact]
    public async Task In_a_terminal_the_whole_completion_comes_before_the_summary_line()
    {
        // Rank 0 streams the completion to stdout, then writes the summary to stderr. Relaying its two pipes
        // separately once printed the completion's last piece after the summary.
        using var p = new RankProcess(["generate", "--world-size", "2", "--prompt", "Once upon a time", "--max-tokens", "24"], mergeStreams: true);
        int code = await p.WaitAsync(Deadline);
        string merged = p.Stdout;
        Assert.True(code == 0, $"generate exited with {code}\noutput:\n{merged}");
        var lines = merged.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length >= 2 && lines[^1].StartsWith("[24 tokens,") && lines[^2].StartsWith(", there was a little girl"),
            $"expected the completion, then the summary, at the end of:\n{merged}");
    }

    [Fact]
    public async Task Once_upon_a_time_continues_identically_at_world_sizes_1_2_and_4()
    {
        var one = await GenerateJson("--prompt", "Once upon a time", "--max-tokens", "64");
        var two = await GenerateJson("--world-size", "2", "--prompt", "Once upon a time", "--max-tokens", "64");
        var four = await GenerateJson("--world-size", "4", "--prompt", "Once upon a time", "--max-tokens", "64");

        // The published greedy run from BOS passes through "Once upon a time" (ids 403 407 261 378) first.
        Assert.Equal(new[] { 1, 403, 407, 261, 378 }, Ids(two, "prompt_ids"));
        Assert.Equal(ExpectedIds()[4..68], Ids(two));
        foreach (var other in new[] { one, four })
        {
            Assert.Equal(Ids(two), Ids(other));
            Assert.Equal(two.GetProperty("text").GetString(), other.GetProperty("text").GetString());
        }
    }

    [Fact]
    public async Task A_stop_string_and_seeded_sampling_give_the_same_result_as_world_size_1()
    {
        string[] stop = ["--prompt", "Once upon a time", "--stop", "Lily"];
        var one = await GenerateJson(stop);
        var two = await GenerateJson(["--world-size", "2", .. stop]);
        Assert.Equal(", there was a little girl named ", two.GetProperty("text").GetString());
        Assert.Equal("stop", two.GetProperty("finish_reason").GetString());
        Assert.Equal(Ids(one), Ids(two));

        string[] sampled = ["--prompt", "Once upon a time", "--temperature", "0.9", "--top-k", "40", "--seed", "7", "--max-tokens", "40"];
        var sampledOne = await GenerateJson(sampled);
        var sampledTwo = await GenerateJson(["--world-size", "2", .. sampled]);
        Assert.Equal(Ids(sampledOne), Ids(sampledTwo));
        Assert.NotEqual(ExpectedIds()[4..44], Ids(sampledTwo)); // really sampled, not greedy
    }

    [Fact]
    public async Task Killing_generate_with_SIGKILL_leaves_no_rank_behind()
    {
        using var parent = new RankProcess(["generate", "--world-size", "4", "--prompt-ids", "1", "--max-tokens", "500"]);
        var children = new List<int>();
        var clock = Stopwatch.StartNew();
        while (children.Count < 4)
        {
            Assert.True(clock.Elapsed < Deadline, "generate did not start its 4 rank processes");
            Assert.False(parent.HasExited, $"generate exited before it could be killed\n{parent.Stderr}");
            children = ChildrenOf(parent.Id);
            await Task.Delay(50);
        }
        parent.KillProcessOnly(); // SIGKILL of the launcher alone: no handler of it runs, its children are untouched
        foreach (int pid in children)
        {
            var exited = Stopwatch.StartNew();
            while (Directory.Exists($"/proc/{pid}") && !IsZombie(pid))
            {
                Assert.True(exited.Elapsed < TimeSpan.FromSeconds(5), $"rank process {pid} outlived its killed parent by 5 s");
                await Task.Delay(100);
            }
        }
    }

    private static List<int> ChildrenOf(int pid)
    {
        var result = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int child)) continue;
            try
            {
                // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so parse after the last ')'.
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1]) == pid) result.Add(child);
            }
            catch (IOException)
            {
                // the process ended while we looked
            }
        }
        return result;
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)] == 'Z';
        }
        catch (IOException)
        {
            return true;
        }
    }
}
