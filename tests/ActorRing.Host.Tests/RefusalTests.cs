using ActorRing.Transport;

namespace ActorRing.Host.Tests;

/// <summary>Configuration mismatches between real serve processes are refused with a clear log line on both sides.</summary>
public sealed class RefusalTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_rank_with_another_secret_is_refused_and_both_sides_say_why()
    {
        var dir = Directory.CreateTempSubdirectory("actorring-refusal-").FullName;
        var configs = RingConfig.ForLoopback(2);
        for (int r = 0; r < 2; r++) File.WriteAllText(Path.Combine(dir, $"ring_{r}.json"), configs[r].ToJson());
        Dictionary<string, string> Env(int rank, string secret) => new()
        {
            ["RING_CONFIG"] = Path.Combine(dir, $"ring_{rank}.json"),
            ["ACTORRING_SECRET"] = secret,
        };
        try
        {
            using var master = new RankProcess(["serve", "--http-port", "0"], Env(0, "the-real-secret"));
            using var worker = new RankProcess(["serve"], Env(1, "a-guessed-secret"));
            await worker.WaitForLogAsync("failed to prove the cluster secret; set the same ACTORRING_SECRET on every rank", Deadline);
            await master.WaitForLogAsync("rank 1 at akka.tcp://actorring@127.0.0.1:", Deadline);
            Assert.Contains("refused to register: the coordinator at akka.tcp://actorring@127.0.0.1:", master.Stderr);
            Assert.DoesNotContain("rank 1/2 registered", master.Stderr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Serve_refuses_cores_this_machine_does_not_have()
    {
        int count = Environment.ProcessorCount;
        using var p = new RankProcess(["serve", "--cores", $"0,{count}"]);
        Assert.NotEqual(0, await p.WaitAsync(Deadline));
        Assert.Contains($"option --cores: core {count} does not exist; this machine has {count} (0-{count - 1})", p.Stderr);
        Assert.Equal("", p.Stdout);
    }

    [Theory]
    [InlineData("generate", "--prompt", "x")]
    [InlineData("serve")]
    public async Task An_unknown_dtype_is_refused_by_name(params string[] verb)
    {
        using var p = new RankProcess([.. verb, "--dtype", "f16"]);
        Assert.NotEqual(0, await p.WaitAsync(Deadline));
        Assert.Contains("option --dtype expects f32 or bf16, got 'f16'", p.Stderr);
        Assert.Equal("", p.Stdout);
    }

    [Fact]
    public async Task Serve_without_a_secret_for_a_multi_rank_ring_explains_the_fix()
    {
        var dir = Directory.CreateTempSubdirectory("actorring-refusal-").FullName;
        var config = RingConfig.ForLoopback(2)[1];
        var path = Path.Combine(dir, "ring_1.json");
        File.WriteAllText(path, config.ToJson());
        try
        {
            using var p = new RankProcess(["serve", "--ring-config", path]);
            Assert.Equal(2, await p.WaitAsync(Deadline));
            Assert.StartsWith("error: ACTORRING_SECRET is not set; every rank of a world_size 2 ring needs the same secret", p.Stderr);
            Assert.Equal("", p.Stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_second_rank_0_on_the_same_master_port_is_refused_instead_of_sharing_it()
    {
        var dir = Directory.CreateTempSubdirectory("actorring-refusal-").FullName;
        var path = Path.Combine(dir, "ring_0.json");
        File.WriteAllText(path, RingConfig.ForLoopback(2)[0].ToJson());
        var env = new Dictionary<string, string> { ["ACTORRING_SECRET"] = "s" };
        try
        {
            using var first = new RankProcess(["serve", "--ring-config", path, "--http-port", "0"], env);
            await first.WaitForLogAsync("rank 0/2: registered with the coordinator", Deadline);
            using var second = new RankProcess(["serve", "--ring-config", path, "--http-port", "0"], env);
            Assert.Equal(2, await second.WaitAsync(Deadline));
            Assert.Contains("is already in use on this machine", second.Stderr);
            Assert.Contains("is another rank 0 running?", second.Stderr);
            Assert.False(first.HasExited);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_random_preset_model_takes_prompt_ids_only()
    {
        using var p = new RankProcess(["serve", "--preset", "llama-160m", "--prompt", "Once upon a time"]);
        Assert.Equal(2, await p.WaitAsync(Deadline));
        Assert.Equal("error: --preset builds a random model with no tokenizer: drop --model, and give prompts with --prompt-ids", p.Stderr.TrimEnd());
    }
}
