using ActorRing.Host.Cli;

namespace ActorRing.Host;

public static class Program
{
    private const string Usage = """
        actorring: tensor-parallel LLM serving over a plain TCP ring

        usage:
          actorring generate [--model DIR] (--prompt TEXT | --prompt-ids 1,403,...) [--max-tokens N]
                             [--temperature T] [--top-k K] [--top-p P] [--seed S] [--world-size N] [--json]
                             [--generation-config auto|ignore] [--dtype f32|bf16] [--quant none|q8_0|q4_0]
                             [--quant-lm-head] [--sync-dtype f32|bf16|q8_0]
          actorring tokenize [--model DIR] (--text TEXT | --chat MESSAGES.json | --decode [--ids 1,403]) [--no-special-tokens]
          actorring serve [--model DIR] [--ring-config FILE] [--interactive] [--http-host H] [--http-port P]
                          [--api-key KEY] [--model-id NAME] [--chat-template FILE] [--max-batch N]
                          (actorring serve --help lists every option)
          actorring secret                       prints a fresh random ACTORRING_SECRET (64 hex digits)
          actorring bench allreduce --world-size N [--sizes 16KiB,256KiB,4MiB,64MiB] [--dtype f32|bf16|f16]
          actorring bench decode --preset llama-160m|tinyllama-1.1b [--world-size N] [--threads T] [--tokens 32]
                                 [--runtime threads|actors] [--dtype f32|bf16] [--quant none|q8_0|q4_0] [--quant-lm-head]
                                 [--sync-dtype f32|bf16|q8_0]
          actorring bench scaling --preset llama-160m|tinyllama-1.1b [--world-size 2] [--threads 2] [--rounds 10]
                                  [--tokens 16] [--dtype f32|bf16] [--quant none|q8_0|q4_0] [--quant-lm-head]
          actorring bench serve --preset llama-160m|tinyllama-1.1b [--world-size N] [--concurrency C]
                                [--max-tokens 64] [--prompt-tokens P] [--requests R]
                                [--shared-prefix-tokens S] [--no-prefix-cache]
          actorring bench tokenize --model DIR [--size 1MiB] [--rounds 5]

        Every verb that takes --model defaults to the bundled stories260K model.
        """;

    /// <summary>Verb name to handler. Each handler receives the arguments after the verb.</summary>
    private static readonly Dictionary<string, Func<string[], Task<int>>> Verbs = new(StringComparer.Ordinal)
    {
        ["generate"] = Commands.GenerateCommand.RunAsync,
        [Serve.ServeOptions.Verb] = Serve.ServeCommand.RunAsync,
        ["bench"] = Bench.BenchCommand.RunAsync,
        ["tokenize"] = Commands.TokenizeCommand.RunAsync,
        ["secret"] = Commands.SecretCommand.RunAsync,
    };

    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Out.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        if (!Verbs.TryGetValue(args[0], out var handler))
        {
            Console.Error.WriteLine($"error: unknown command '{args[0]}'");
            Console.Error.WriteLine(Usage);
            return 2;
        }
        try
        {
            return await handler(args[1..]);
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}
