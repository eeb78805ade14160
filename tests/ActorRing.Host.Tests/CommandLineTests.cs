using System.CommandLine;
using ActorRing.Host.Cli;
using ActorRing.Host.Serve;

namespace ActorRing.Host.Tests;

/// <summary>The command line as a user meets it, run in process: errors that name the option and value, exit
/// codes, --help on every verb, and what generate passes on to its ranks.</summary>
public sealed class CommandLineTests
{
    private static async Task<(int Code, string Stdout, string Stderr)> Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await CommandLine.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Theory]
    [InlineData("error: unknown option '--bogus'; 'actorring serve --help' lists every option", "serve", "--bogus")]
    [InlineData("error: unknown option '--bogus'; 'actorring serve --help' lists every option", "serve", "--bogus=1")]
    [InlineData("error: unknown option '--max-token' (did you mean '--max-tokens'?); 'actorring generate --help' lists every option", "generate", "--max-token", "5")]
    [InlineData("error: option --http-port needs a value", "serve", "--http-port")]
    [InlineData("error: option --http-port expects an integer, got 'eighty'", "serve", "--http-port", "eighty")]
    [InlineData("error: option --http-port must be between 0 and 65535, got 70000", "serve", "--http-port", "70000")]
    [InlineData("error: option --max-batch is given 2 times; give it once", "serve", "--max-batch", "2", "--max-batch", "3")]
    [InlineData("error: option --prompt-ids expects comma-separated integers, got 'x' in '1,x'", "generate", "--prompt-ids", "1,x")]
    [InlineData("error: option --temperature expects a number, got 'hot'", "generate", "--temperature", "hot")]
    [InlineData("error: option --dtype expects f32 or bf16, got 'f16'", "bench", "decode", "--preset", "llama-160m", "--dtype", "f16")]
    [InlineData("error: option --dtype must be f32, bf16 or f16, got 'f64'", "bench", "allreduce", "--world-size", "2", "--dtype", "f64")]
    [InlineData("error: option --kv-dtype expects auto, f32 or bf16, got 'f16'", "generate", "--kv-dtype", "f16")]
    [InlineData("error: option --preset expects llama-160m, tinyllama-1.1b or qwen3-moe-520m, got 'gpt-5'", "serve", "--preset", "gpt-5")]
    [InlineData("error: option --sizes expects sizes like 16KiB, 4MiB or 1048576, got '4 lots'", "bench", "allreduce", "--world-size", "2", "--sizes", "4 lots")]
    [InlineData("error: option --json is a flag: give it alone, or as --json=true or --json=false; got 'yes'", "generate", "--json=yes")]
    [InlineData("error: unexpected argument 'now'; actorring secret takes options only ('actorring secret --help' lists them)", "secret", "now")]
    [InlineData("error: unknown command 'fly' for 'actorring'; available: generate, serve, tokenize, secret, bench", "fly")]
    [InlineData("error: 'actorring bench' needs one of: allreduce, decode, scaling, serve, tokenize", "bench")]
    [InlineData("error: --quant-lm-head quantizes the LM head to the --quant format; give --quant q8_0, q4_0, q4_1 or q5_1 too", "generate", "--quant-lm-head")]
    [InlineData("error: --quant-lm-head quantizes the LM head to the --quant format; give --quant q8_0, q4_0, q4_1 or q5_1 too", "bench", "serve", "--preset", "llama-160m", "--quant-lm-head")]
    [InlineData("error: option --quant expects none, q8_0, q4_0, q4_1 or q5_1, got 'q2_k'", "bench", "serve", "--preset", "llama-160m", "--quant", "q2_k")]
    [InlineData("error: give either --prompt or --prompt-ids, not both", "serve", "--prompt", "x", "--prompt-ids", "1")]
    public async Task A_bad_command_line_is_one_error_line_naming_the_option_and_exit_code_2(string expected, params string[] args)
    {
        var (code, stdout, stderr) = await Run(args);
        Assert.Equal(2, code);
        Assert.Equal(expected, stderr.TrimEnd());
        Assert.Equal("", stdout);
    }

    [Fact]
    public async Task An_argument_starting_with_at_is_text_not_a_response_file()
    {
        var (code, stdout, stderr) = await Run("tokenize", "--text", "@Once");
        Assert.Equal("", stderr);
        Assert.Equal(0, code);
        var ids = System.Text.Json.JsonSerializer.Deserialize<int[]>(stdout)!;
        Assert.Equal((0, "\"@Once\"\n", ""), await Run("tokenize", "--decode", "--ids", string.Join(',', ids)));
    }

    [Fact]
    public async Task No_verb_prints_the_verbs_and_fails_while_help_succeeds()
    {
        var (code, stdout, _) = await Run();
        Assert.Equal(2, code);
        foreach (var verb in new[] { "generate", "serve", "tokenize", "secret", "bench" }) Assert.Contains($"  {verb} ", stdout);
        Assert.Equal((0, stdout, ""), await Run("--help"));
    }

    /// <summary>Every verb and benchmark a user can see answers --help with exit 0 and a line for each of its options.</summary>
    [Fact]
    public async Task Every_visible_verb_lists_every_option_in_its_help()
    {
        var verbs = new List<string[]>();
        foreach (var command in CommandLine.CreateRoot().Subcommands.Where(c => !c.Hidden))
        {
            verbs.Add([command.Name]);
            verbs.AddRange(command.Subcommands.Where(c => !c.Hidden).Select(c => new[] { command.Name, c.Name }));
        }
        Assert.Equal(10, verbs.Count); // generate, serve, tokenize, secret, bench and its 5 benchmarks
        foreach (var path in verbs)
        {
            var (code, stdout, stderr) = await Run([.. path, "--help"]);
            Assert.Equal(0, code);
            Assert.Equal("", stderr);
            Assert.Contains($" {string.Join(' ', path)} [", stdout); // after the executable's name: "[options]" or "[command]"
            Command command = CommandLine.CreateRoot();
            foreach (var name in path) command = command.Subcommands.Single(c => c.Name == name);
            foreach (var option in command.Options.Where(o => !o.Hidden))
                Assert.Contains($"  {option.Name}", stdout);
        }
    }

    [Fact]
    public async Task Help_shows_defaults_as_they_are_typed_and_serve_help_ends_with_its_notes()
    {
        var (_, stdout, _) = await Run("serve", "--help");
        string Line(string option) => stdout.Split('\n').Single(l => l.TrimStart().StartsWith(option + " ", StringComparison.Ordinal));
        Assert.EndsWith("[default: 8080]", Line("--http-port").TrimEnd());
        Assert.EndsWith("[default: 127.0.0.1]", Line("--http-host").TrimEnd());
        Assert.EndsWith("[default: f32]", Line("--dtype").TrimEnd());
        Assert.EndsWith("[default: 16]", Line("--max-batch").TrimEnd());
        Assert.Contains("--ring-config or RING_CONFIG", stdout[stdout.IndexOf("Notes:", StringComparison.Ordinal)..]);
    }

    [Fact]
    public void Serve_defaults_run_a_server_on_the_documented_address()
    {
        var options = ServeOptions.Parse([]);
        Assert.False(options.OneShot);
        Assert.True(options.Http);
        Assert.Equal(("127.0.0.1", 8080), (options.HttpHost, options.HttpPort));
        Assert.Equal((16, 256), (options.Scheduling.MaxBatch, options.Scheduling.PrefillChunk));
        Assert.Equal(TimeSpan.FromSeconds(600), options.ReadyTimeout);
        Assert.Null(options.Load.Cores);
        Assert.Null(options.Load.KvDType); // auto: the cache in the compute dtype
        Assert.Equal("stories260K", options.ModelId);

        var oneShot = ServeOptions.Parse(["--prompt-ids", "1,403", "--max-tokens=7", "--dtype", "bfloat16", "--kv-dtype", "f32", "--interactive=false"]);
        Assert.Equal([1, 403], oneShot.PromptIds!);
        Assert.False(oneShot.Http);
        Assert.Equal(7, oneShot.Sampling.MaxTokens);
        Assert.Equal(Model.ComputeDType.BF16, oneShot.Load.DType);
        Assert.Equal(Model.ComputeDType.F32, oneShot.Load.KvDType);
    }

    /// <summary>generate hands the shard's options to every rank and the request's to rank 0, spelled so that
    /// serve parses them back to the same values.</summary>
    [Fact]
    public void Generate_passes_the_options_given_on_to_its_ranks()
    {
        var o = new Commands.GenerateCommand.Definitions();
        var command = new Command("generate");
        o.AddTo(command);
        var cli = CommandLine.ParseVerb(command,
            ["--prompt", "Once", "--model", "/m odel", "--quant", "q8_0", "--quant-lm-head", "--kv-dtype", "bf16", "--temperature", "0.5", "--stop=\n", "--world-size", "2", "--json"]);
        Assert.Equal(["--model=/m odel", "--kv-dtype=bf16", "--quant=q8_0", "--quant-lm-head"], o.Rank.GivenArguments(cli));
        Assert.Equal(["--temperature=0.5", "--stop=\n"], o.Sampling.GivenArguments(cli));

        var serve = ServeOptions.Parse([.. o.Sampling.GivenArguments(cli), .. o.Rank.GivenArguments(cli).Where(a => !a.StartsWith("--model=", StringComparison.Ordinal)), "--prompt-ids", "1"]);
        Assert.Equal(0.5f, serve.Sampling.Temperature);
        Assert.Equal(["\n"], serve.Sampling.StopStrings);
        Assert.True(serve.Load.QuantizeLmHead);
        Assert.Equal(Model.ComputeDType.BF16, serve.Load.KvDType);
    }
}
