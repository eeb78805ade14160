using ActorRing.Model.Sampling;

namespace ActorRing.Model.Tests;

/// <summary>generation_config.json as the defaults a request does not override.</summary>
public class GenerationDefaultsTests
{
    // Qwen/Qwen3-0.6B's generation_config.json as published.
    private const string Qwen3 = """
        {"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
         "temperature": 0.6, "top_k": 20, "top_p": 0.95, "transformers_version": "4.51.0"}
        """;

    [Fact]
    public void Qwen3s_file_sets_temperature_top_k_top_p_and_two_eos_ids()
    {
        var d = GenerationDefaults.Parse(Qwen3);
        Assert.Equal((0.6f, 20, 0.95f, (float?)null), (d.Temperature, d.TopK, d.TopP, d.RepetitionPenalty));
        Assert.Equal([151645, 151643], d.EosTokenIds);

        var unset = d.Resolve(new SamplingRequest(MaxTokens: 12, Seed: 5));
        Assert.Equal(new SamplingOptions(0.6f, 20, 0.95f, 1f, 5, 12) with { StopTokenIds = unset.StopTokenIds }, unset);
        Assert.Equal([151645, 151643], unset.StopTokenIds);

        // What a request gives wins, an explicit value equal to the built-in default included.
        var given = d.Resolve(new SamplingRequest(Temperature: 0, TopK: 0, TopP: 1, StopTokenIds: [7]));
        Assert.Equal((0f, 0, 1f), (given.Temperature, given.TopK, given.TopP));
        Assert.Equal([7, 151645, 151643], given.StopTokenIds);
    }

    [Fact]
    public void A_single_eos_id_and_do_sample_false_mean_one_stop_id_and_greedy()
    {
        var d = GenerationDefaults.Parse("""{"eos_token_id": 2, "do_sample": false, "temperature": 0.7, "repetition_penalty": 1.1}""");
        Assert.Equal([2], d.EosTokenIds);
        Assert.Equal(0f, d.Temperature); // transformers decodes greedily unless do_sample is true
        var options = d.Resolve(new SamplingRequest());
        Assert.True(options.IsGreedy);
        Assert.Equal(1.1f, options.RepetitionPenalty);
    }

    [Fact]
    public void No_file_gives_the_built_in_defaults_and_the_bundled_file_only_an_eos_id()
    {
        Assert.Equal(SamplingOptions.Greedy, GenerationDefaults.None.Resolve(new SamplingRequest()));
        // A llama2.c checkpoint has no generation_config.json.
        Assert.Same(GenerationDefaults.None, GenerationDefaults.Load(TestPaths.Llama2c));
        // The bundled Hugging Face export's file names EOS 2 and no sampling: greedy still, stopping at 2.
        var bundled = GenerationDefaults.Load(TestPaths.Bundled).Resolve(new SamplingRequest());
        Assert.Equal(SamplingOptions.Greedy with { StopTokenIds = bundled.StopTokenIds }, bundled);
        Assert.Equal([2], bundled.StopTokenIds);
    }

    [Fact]
    public void A_file_in_the_model_directory_is_read()
    {
        string dir = Directory.CreateTempSubdirectory("actorring-genconfig-").FullName;
        try
        {
            foreach (var f in Directory.GetFiles(TestPaths.Hf)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            File.WriteAllText(Path.Combine(dir, GenerationDefaults.FileName), Qwen3);
            var d = GenerationDefaults.Load(dir);
            Assert.Equal(20, d.TopK);
            Assert.EndsWith("generation_config.json: temperature 0.6, top_p 0.95, top_k 20, eos_token_id [151645, 151643]", d.ToString());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("""{"temperature": -0.5}""", "temperature = -0.5 is not usable: expected a number >= 0")]
    [InlineData("""{"top_p": 1.5}""", "top_p = 1.5 is not usable: expected a number in (0, 1]")]
    [InlineData("""{"top_k": 2.5}""", "top_k = 2.5 is not usable: expected an integer >= 0")]
    [InlineData("""{"top_k": "40"}""", "top_k = \"40\" is not usable: expected a number")]
    [InlineData("""{"eos_token_id": [2, "x"]}""", "eos_token_id = [2, \"x\"] is not usable: expected a token id or a list of token ids")]
    [InlineData("""{"repetition_penalty": 0}""", "repetition_penalty = 0 is not usable: expected a number > 0")]
    [InlineData("""[1]""", "must hold a JSON object")]
    public void Unusable_values_are_refused_naming_the_field_the_value_and_the_way_out(string json, string expected)
    {
        var e = Assert.Throws<ModelLoadException>(() => GenerationDefaults.Parse(json, "m/generation_config.json"));
        Assert.StartsWith("m/generation_config.json", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.EndsWith("or pass --generation-config ignore", e.Message);
    }
}
