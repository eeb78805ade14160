using System.Text.Json;
using ActorRing.Model.Tests.Support;

namespace ActorRing.Host.Tests;

/// <summary>
/// The model families the bundled model does not cover, served as users run them: <c>actorring generate --model DIR
/// --world-size N</c>, N real <c>serve</c> processes on loopback. Each model is random-weight, written as a Hugging
/// Face directory with the bundled model's tokenizer (the same 512-token vocabulary).
/// </summary>
public sealed class ModelFamilyProcessTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "actorring-moe-e2e-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    public static TheoryData<string> Families() => new(["qwen3_moe", "gemma3", "gemma2", "granite", "smollm3", "olmo2", "mistral3", "qwen2_moe", "glm4", "phi3"]);

    private static SyntheticModel Family(string name) => name switch
    {
        // 8 experts of 16 (4 per rank at N = 4), 2 per token, renormalized; layer 1 dense.
        "qwen3_moe" => new SyntheticModel
        {
            ModelType = "qwen3_moe", Hidden = 32, HeadDim = 16, Heads = 4, KvHeads = 2, Vocab = 512, Layers = 3,
            Experts = 8, ExpertsPerToken = 2, ExpertIntermediate = 16, Intermediate = 48, DenseLayers = [1],
        },
        // Gemma 3 as 4B and up ship: an image-and-text config and checkpoint around the text model; windows of 4 on
        // layers 0 and 2, layer 1 global with linear RoPE scaling.
        "gemma3" => new SyntheticModel
        {
            ModelType = "gemma3_text", Hidden = 32, HeadDim = 16, Heads = 4, KvHeads = 2, Vocab = 512, Layers = 3,
            SlidingWindow = 4, Theta = 1_000_000, LinearRope = 2.0, ImageTextWrapper = true,
        },
        // Gemma 2: layers 0 and 2 windowed (4), both soft-caps low enough to change the scores and the logits.
        "gemma2" => new SyntheticModel
        {
            ModelType = "gemma2", Hidden = 32, HeadDim = 16, Heads = 4, KvHeads = 2, Vocab = 512, Layers = 3,
            SlidingWindow = 4, AttnSoftcap = 1.5, FinalSoftcap = 4,
        },
        // Granite: llama with its four µP scalars, each far from 1.
        "granite" => new SyntheticModel
        {
            ModelType = "granite", Hidden = 32, HeadDim = 8, Heads = 4, KvHeads = 2, Vocab = 512, Layers = 2,
            EmbeddingMultiplier = 4, AttentionMultiplier = 0.125, ResidualMultiplier = 0.3, LogitsScaling = 2.5,
        },
        // Mistral Small 3.1 as transformers 4.52+ saves it: a mistral3 config around the text model, whose tensors sit
        // under model.language_model.; a window of 5 on every layer.
        "mistral3" => new SyntheticModel
        {
            ModelType = "mistral", Hidden = 32, HeadDim = 8, Heads = 4, KvHeads = 2, Vocab = 512, Layers = 2, SlidingWindow = 5,
            Tied = false, ImageTextWrapper = true,
        },
        // Qwen1.5-MoE's layout: 8 experts of 16, 2 per token, and a shared expert of 32 gated by σ(gate · x).
        "qwen2_moe" => new SyntheticModel
        {
            ModelType = "qwen2_moe", Hidden = 32, HeadDim = 8, Heads = 4, KvHeads = 4, Vocab = 512, Layers = 2,
            Experts = 8, ExpertsPerToken = 2, ExpertIntermediate = 16, SharedIntermediate = 32, NormTopK = false, Tied = false,
        },
        // GLM-4: half of each head turned in interleaved pairs (reordered as the checkpoint is read), four norms a layer,
        // gate_up_proj fused, q/k/v biases.
        "glm4" => new SyntheticModel
        {
            ModelType = "glm4", Hidden = 32, HeadDim = 16, Heads = 4, KvHeads = 2, Vocab = 512, Layers = 2, PartialRotary = 0.5,
            AttentionBias = true, Tied = false,
        },
        // OLMo 2: output norms, no pre-norms, q and k normalized over their whole projections (a reduce across ranks).
        "olmo2" => new SyntheticModel { ModelType = "olmo2", Hidden = 32, HeadDim = 8, Heads = 4, KvHeads = 2, Vocab = 512, Layers = 2, Tied = false },
        // SmolLM3: llama with every fourth layer's RoPE off (no_rope_layer_interval 4, no list): layer 3 of 4.
        "smollm3" => new SyntheticModel { ModelType = "smollm3", Hidden = 32, HeadDim = 8, Heads = 4, KvHeads = 2, Vocab = 512, Layers = 4 },
        // Fused qkv_proj and gate_up_proj, a window of 6 on every layer.
        _ => new SyntheticModel { ModelType = "phi3", Hidden = 32, HeadDim = 8, Heads = 4, KvHeads = 4, Vocab = 512, Layers = 2, SlidingWindow = 6, Tied = false },
    };

    [Theory]
    [MemberData(nameof(Families))]
    public async Task Greedy_ids_over_real_processes_equal_the_reference_forward(string family)
    {
        var model = Family(family).Build(seed: 2026);
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

        // One, two and four ranks for the first three families; the later ones at two (each family's maths is checked
        // at world sizes 1, 2 and 4 in process by ArchitectureTests, and every process here costs the suite seconds).
        foreach (int n in family is "qwen3_moe" or "gemma3" or "phi3" ? new[] { 1, 2, 4 } : [2])
        {
            using var p = new RankProcess(["generate", "--model", _dir, "--world-size", n.ToString(), "--prompt-ids", string.Join(',', prompt),
                "--max-tokens", tokens.ToString(), "--json"]);
            int code = await p.WaitAsync(TimeSpan.FromSeconds(90));
            Assert.True(code == 0, $"{family}: generate at world size {n} exited with {code}\nstderr:\n{p.Stderr}");
            var result = JsonDocument.Parse(p.Stdout.Trim()).RootElement;
            var ids = result.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToList();
            Assert.True(expected.SequenceEqual(ids), $"{family}, world size {n}: [{string.Join(",", ids)}], the reference [{string.Join(",", expected)}]");
        }
    }
}
