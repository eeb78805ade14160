using System.Text.Json;
using ActorRing.Model.Tests.Support;

namespace ActorRing.Host.Tests;

/// <summary>
/// A mixture-of-experts model served as users run one: <c>actorring generate --model DIR --world-size N</c>, N real
/// <c>serve</c> processes on loopback. The model is a random-weight qwen3_moe written as a Hugging Face directory
/// with the bundled model's tokenizer (same 512-token vocabulary).
/// </summary>
public sealed class MixtureOfExpertsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "actorring-moe-e2e-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Greedy_ids_over_one_two_and_four_processes_equal_the_reference_forward()
    {
        // 8 experts of 16 (4 per rank at N = 4), 2 per token, renormalized; layer 1 dense.
        var model = new SyntheticModel
        {
            ModelType = "qwen3_moe", Hidden = 32, HeadDim = 16, Heads = 4, KvHeads = 2, Vocab = 512, Layers = 3,
            Experts = 8, ExpertsPerToken = 2, ExpertIntermediate = 16, Intermediate = 48, DenseLayers = [1],
        }.Build(seed: 2026);
        model.WriteTo(_dir);
        File.Copy(Path.Combine(AppContext.BaseDirectory, "models", "stories260K", "hf", "tokenizer.model"), Path.Combine(_dir, "tokenizer.model"));

        int[] prompt = [1, 403, 407, 261, 378];
        const int tokens = 10;
        var expected = new List<int>();
        for (int i = 0; i < tokens; i++)
        {
            var logits = ReferenceForward.LastLogits(model, [.. prompt, .. expected]);
            expected.Add(Array.IndexOf(logits, logits.Max()));
        }

        foreach (int n in new[] { 1, 2, 4 })
        {
            using var p = new RankProcess(["generate", "--model", _dir, "--world-size", n.ToString(), "--prompt-ids", string.Join(',', prompt),
                "--max-tokens", tokens.ToString(), "--json"]);
            int code = await p.WaitAsync(TimeSpan.FromSeconds(90));
            Assert.True(code == 0, $"generate at world size {n} exited with {code}\nstderr:\n{p.Stderr}");
            var result = JsonDocument.Parse(p.Stdout.Trim()).RootElement;
            var ids = result.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToList();
            Assert.True(expected.SequenceEqual(ids), $"world size {n}: [{string.Join(",", ids)}], the reference [{string.Join(",", expected)}]");
        }
    }
}
