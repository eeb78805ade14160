using ActorRing.Transport;

namespace ActorRing.Host.Tests;

/// <summary>Configuration mismatches between real serve processes are refused with a clear log line on both sides.</summary>
public sealed class RefusalTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_rank_with_another_secret_is_refused_and_both_sides_say_why()
    {
        using var ring = new LoopbackRing(2);
        await ring.RunAsync(async () =>
        {
            var master = ring.Serve(0, ["--http-port", "0"]);
            var worker = ring.Serve(1, secret: TestSecrets.Other);
            // The worker proves first, so the coordinator refuses it without handing out a proof of its own.
            const string why = "wrong cluster secret: the proof does not match; set the same ACTORRING_SECRET on every rank";
            await worker.WaitForLogAsync("the coordinator refused rank 1: " + why, Deadline);
            await master.WaitForLogAsync("refused registration of rank 1 from akka.tcp://actorring@127.0.0.1:", Deadline);
            Assert.Contains(why, master.Stderr);
            Assert.DoesNotContain("rank 1/2 registered", master.Stderr);
        });
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

    [Fact]
    public async Task A_prompt_longer_than_the_context_is_refused_in_its_own_figures()
    {
        // 10 tokens with BOS in the bundled tokenizer; the warm-up before it takes only the first 4, and its own
        // refusal ("the prompt is 4 tokens") used to be what the user saw.
        using var p = new RankProcess(["generate", "--prompt", "Once upon a time there was a dog", "--max-tokens", "4", "--context", "4"]);
        Assert.NotEqual(0, await p.WaitAsync(Deadline));
        Assert.Contains("error: the prompt is 10 tokens, but this model's context is 4 tokens and at least one must be left for the completion; shorten the prompt", p.Stderr);
        Assert.DoesNotContain("the prompt is 4 tokens", p.Stderr);
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
        var env = new Dictionary<string, string> { ["ACTORRING_SECRET"] = TestSecrets.Cluster };
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
    public async Task A_secret_shorter_than_16_bytes_is_refused_unless_the_insecure_flag_is_given()
    {
        var dir = Directory.CreateTempSubdirectory("actorring-refusal-").FullName;
        var path = Path.Combine(dir, "ring_1.json");
        File.WriteAllText(path, RingConfig.ForLoopback(2)[1].ToJson());
        var env = new Dictionary<string, string> { ["ACTORRING_SECRET"] = "s3cret" };
        try
        {
            using var refused = new RankProcess(["serve", "--ring-config", path], env);
            Assert.Equal(2, await refused.WaitAsync(Deadline));
            Assert.Equal("error: ACTORRING_SECRET is 6 byte(s) long; it must be at least 16 bytes, because a short secret can be guessed offline from one proof. " +
                         "Make one with 'actorring secret' (or: openssl rand -hex 32) and give every rank the same value, or pass --insecure-short-secret for a test",
                refused.Stderr.TrimEnd());

            // With the flag the secret passes, and the next check (the model directory) is what stops it.
            using var allowed = new RankProcess(["serve", "--ring-config", path, "--insecure-short-secret", "--model", Path.Combine(dir, "no-model")], env);
            Assert.Equal(2, await allowed.WaitAsync(Deadline));
            Assert.DoesNotContain("ACTORRING_SECRET", allowed.Stderr);
            Assert.Contains("no-model", allowed.Stderr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Actorring_secret_prints_a_fresh_64_digit_secret_each_time()
    {
        using var first = new RankProcess(["secret"]);
        using var second = new RankProcess(["secret"]);
        Assert.Equal(0, await first.WaitAsync(Deadline));
        Assert.Equal(0, await second.WaitAsync(Deadline));
        Assert.Matches("^[0-9a-f]{64}$", first.Stdout.TrimEnd());
        Assert.NotEqual(first.Stdout, second.Stdout);
    }

    [Fact]
    public async Task A_random_preset_model_takes_prompt_ids_only()
    {
        using var p = new RankProcess(["serve", "--preset", "llama-160m", "--prompt", "Once upon a time"]);
        Assert.Equal(2, await p.WaitAsync(Deadline));
        Assert.Equal("error: --preset builds a random model with no tokenizer: drop --model, and give prompts with --prompt-ids", p.Stderr.TrimEnd());
    }
}
