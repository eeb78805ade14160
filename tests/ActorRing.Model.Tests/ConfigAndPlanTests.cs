namespace ActorRing.Model.Tests;

public class ConfigAndPlanTests
{
    private const string Base = """
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
        "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 512,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": true
        """;

    private static ModelConfig Parse(string extra) => ModelConfig.FromHuggingFaceJson("{" + Base + extra + "}");

    [Fact]
    public void Bundled_config_parses_and_matches_the_llama2c_header()
    {
        var hf = ModelDirectory.Recognise(TestPaths.Hf).ReadConfig();
        var l2c = ModelDirectory.Recognise(TestPaths.Llama2c).ReadConfig();
        Assert.Equal((64, 172, 5, 8, 4, 8, 512, true), (hf.HiddenSize, hf.IntermediateSize, hf.NumLayers, hf.NumHeads, hf.NumKvHeads, hf.HeadDim, hf.VocabSize, hf.TieWordEmbeddings));
        Assert.Equal(hf.Fingerprint, l2c.Fingerprint);
        Assert.Matches("^[0-9a-f]{16}$", hf.Fingerprint);
    }

    [Fact]
    public void Fingerprint_changes_with_anything_numerical()
    {
        Assert.Equal(Parse("").Fingerprint, Parse("").Fingerprint);
        Assert.NotEqual(Parse("").Fingerprint, Parse(""", "head_dim": 16""").Fingerprint);
        Assert.NotEqual(Parse("").Fingerprint, ModelConfig.FromHuggingFaceJson("{" + Base.Replace("10000.0", "500000.0") + "}").Fingerprint);
    }

    [Theory]
    [InlineData(""", "hidden_act": "gelu" """, "hidden_act = \"gelu\"")]
    [InlineData(""", "rope_scaling": {"rope_type": "dynamic", "factor": 4.0} """, "rope_scaling.rope_type = dynamic: supported are linear, llama3, yarn and longrope")]
    [InlineData(""", "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "low_freq_factor": 1.0} """, "rope_scaling.low_freq_factor = 1.0: not a yarn rope_scaling field")]
    [InlineData(""", "quantization_config": {"bits": 4} """, "quantization_config")]
    [InlineData(""", "mlp_bias": true """, "mlp_bias = true")]
    [InlineData(""", "use_sliding_window": true """, "use_sliding_window")]
    public void Unsupported_fields_are_refused_naming_field_and_value(string extra, string expected)
    {
        var e = Assert.Throws<ModelLoadException>(() => Parse(extra));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Unsupported_model_type_is_refused()
    {
        var e = Assert.Throws<ModelLoadException>(() => ModelConfig.FromHuggingFaceJson("{" + Base.Replace("\"llama\"", "\"gpt2\"") + "}"));
        Assert.Contains("model_type = \"gpt2\"", e.Message);
    }

    [Fact]
    public void Llama3_rope_scaling_is_parsed()
    {
        var c = Parse(""", "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}""");
        Assert.Equal(new Llama3RopeScaling(32, 1, 4, 8192), c.RopeScaling);
        Assert.NotEqual(Parse("").Fingerprint, c.Fingerprint);
    }

    [Fact]
    public void Yarn_and_linear_rope_scaling_are_parsed_with_transformers_defaults()
    {
        // Qwen3's advice for 131072 tokens: yarn, factor 4 over its native 32768. Attention factor 0.1·ln 4 + 1.
        var qwen = Parse(""", "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}""");
        Assert.Equal(new YarnRopeScaling(4, 32768, 32, 1, 0.1 * Math.Log(4) + 1, true), qwen.RopeScaling);
        // DeepSeek's form: mscale / mscale_all_dim give the attention factor, and the original length defaults to
        // max_position_embeddings (512 in this config).
        var deepseek = Parse(""", "rope_scaling": {"type": "yarn", "factor": 40, "mscale": 1.0, "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1}""");
        var y = Assert.IsType<YarnRopeScaling>(deepseek.RopeScaling);
        Assert.Equal((512, (0.1 * Math.Log(40) + 1) / (0.1 * 0.707 * Math.Log(40) + 1)), (y.OriginalMaxPositionEmbeddings, y.AttentionFactor));
        Assert.Equal(new LinearRopeScaling(2), Parse(""", "rope_scaling": {"type": "linear", "factor": 2.0}""").RopeScaling);
        Assert.Equal(4, new[] { Parse(""), qwen, deepseek, Parse(""", "rope_scaling": {"type": "linear", "factor": 2.0}""") }.Select(c => c.Fingerprint).Distinct().Count());
    }

    [Fact]
    public void Heads_that_do_not_divide_are_refused_before_loading()
    {
        var c = Parse("") with { NumHeads = 30, NumKvHeads = 30, HeadDim = 2 };
        var e = Assert.Throws<ModelLoadException>(() => ShardPlan.Create(c, 0, 4));
        Assert.Equal("30 attention heads cannot be split over 4 ranks; use a world size that divides 30", e.Message);
        var kv = Parse("") with { NumHeads = 12, NumKvHeads = 3 };
        Assert.Contains("3 key/value heads cannot be split over 4 ranks", Assert.Throws<ModelLoadException>(() => ShardPlan.Create(kv, 0, 4)).Message);
    }

    [Fact]
    public void Plans_split_or_replicate_kv_heads_and_split_vocab_unevenly()
    {
        var c = Parse("") with { NumKvHeads = 2, VocabSize = 101 };
        var plans = Enumerable.Range(0, 4).Select(r => ShardPlan.Create(c, r, 4)).ToArray();
        Assert.All(plans, p => Assert.True(p.KvReplicated));
        Assert.Equal([0, 0, 1, 1], plans.Select(p => p.KvHeadStart));
        Assert.Equal([26, 25, 25, 25], plans[0].VocabCounts);
        Assert.Equal([0, 26, 51, 76], plans.Select(p => p.VocabStart));
        Assert.Equal([43, 43, 43, 43], plans.Select(p => p.LocalFfn));
        var split = ShardPlan.Create(Parse(""), 1, 2);
        Assert.False(split.KvReplicated);
        Assert.Equal((4, 4, 2, 2), (split.HeadStart, split.LocalHeads, split.KvHeadStart, split.LocalKvHeads));
    }

    [Fact]
    public void Model_directories_are_recognised_by_content()
    {
        Assert.Equal(ModelFormat.HuggingFace, ModelDirectory.Recognise(TestPaths.Hf).Format);
        var l2c = ModelDirectory.Recognise(TestPaths.Llama2c);
        Assert.Equal(ModelFormat.Llama2c, l2c.Format);
        Assert.Equal("stories260K.bin", Path.GetFileName(l2c.CheckpointFile));
        Assert.Equal("tok512.bin", Path.GetFileName(l2c.TokenizerFile));
        Assert.Equal(ModelFormat.HuggingFace, ModelDirectory.Recognise(TestPaths.Bundled).Format);
        string empty = Directory.CreateTempSubdirectory("actorring-empty-").FullName;
        try
        {
            var e = Assert.Throws<ModelLoadException>(() => ModelDirectory.Recognise(empty));
            Assert.Contains("is not a model directory", e.Message);
        }
        finally
        {
            Directory.Delete(empty);
        }
    }
}
