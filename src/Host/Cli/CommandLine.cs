using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;

namespace ActorRing.Host.Cli;

/// <summary>
/// The <c>actorring</c> command tree (System.CommandLine) and how it runs: parse errors and
/// <see cref="UsageException"/>s become one <c>error:</c> line each on stderr and exit code 2, never a stack
/// trace; <c>--help</c> works on every verb and exits 0.
/// </summary>
public static class CommandLine
{
    public const int UsageExitCode = 2;

    /// <summary>Arguments are taken as typed: no "@file" response files (a prompt may start with '@').</summary>
    private static readonly ParserConfiguration Parsing = new() { ResponseFileTokenReplacer = null };

    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("actorring: tensor-parallel LLM serving over a plain TCP ring. " +
                                   "Every verb that takes --model defaults to the bundled stories260K model.")
        {
            Commands.GenerateCommand.Create(),
            Serve.ServeCommand.Create(),
            Commands.TokenizeCommand.Create(),
            Commands.SecretCommand.Create(),
            Bench.BenchCommand.Create(),
        };
        var helpOption = root.Options.OfType<HelpOption>().Single();
        helpOption.Action = new VerbCommand.HelpWithNotes((HelpAction)helpOption.Action!);
        // No verb: the overview, but as a usage error (a script that forgot its verb should not pass).
        root.SetAction(result =>
        {
            WriteHelp(root, result.InvocationConfiguration.Output);
            return UsageExitCode;
        });
        var help = new Command("help", "Show this overview") { Hidden = true };
        help.SetAction(result => WriteHelp(root, result.InvocationConfiguration.Output));
        root.Subcommands.Add(help);
        return root;
    }

    public static async Task<int> RunAsync(string[] args, TextWriter? output = null, TextWriter? error = null)
    {
        output ??= Console.Out;
        error ??= Console.Error;
        var result = CreateRoot().Parse(args, Parsing);
        if (result.Action is not (HelpAction or VerbCommand.HelpWithNotes) && Describe(result) is { Count: > 0 } problems)
        {
            foreach (var problem in problems) error.WriteLine($"error: {problem}");
            return UsageExitCode;
        }
        var configuration = new InvocationConfiguration
        {
            Output = output,
            Error = error,
            // Usage errors are reported below; anything else is a bug and keeps its stack trace.
            EnableDefaultExceptionHandler = false,
            // serve stops on Ctrl-C through the generic host, and the rank launcher kills its children on it:
            // the library's own handler would cancel and then force an exit under them.
            ProcessTerminationTimeout = null,
        };
        try
        {
            return await result.InvokeAsync(configuration);
        }
        catch (UsageException e)
        {
            error.WriteLine($"error: {e.Message}");
            return UsageExitCode;
        }
    }

    /// <summary>Parses the arguments of one verb (without the verb's name) for code that runs a verb in
    /// process; a parse error becomes a <see cref="UsageException"/>.</summary>
    public static ParseResult ParseVerb(Command verb, IReadOnlyList<string> args)
    {
        var result = verb.Parse(args, Parsing);
        return Describe(result) is { Count: > 0 } problems ? throw new UsageException(string.Join("; ", problems)) : result;
    }

    /// <summary>
    /// The parse errors of <paramref name="result"/> in our words: the option and value named, and the fix
    /// (the library's "Unrecognized command or argument" does not say whether an option or a value is wrong).
    /// </summary>
    internal static List<string> Describe(ParseResult result)
    {
        var problems = new List<string>();
        var command = result.CommandResult.Command;
        string verb = VerbPath(result.CommandResult);
        // One unknown token is enough: after it, the rest rarely parses as intended ("--bogus 1" would add "'1'").
        if (result.UnmatchedTokens.Count > 0)
        {
            string token = result.UnmatchedTokens[0];
            if (FlagGivenAValue(result, command, token) is { } flag)
            {
                problems.Add($"option {flag} is a flag: give it alone, or as {flag}=true or {flag}=false; got '{token}'");
                return problems;
            }
            string visibleCommands = string.Join(", ", command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name));
            problems.Add(token.StartsWith('-')
                ? $"unknown option '{token.Split('=')[0]}'{Suggestion(command, token.Split('=')[0])}; '{verb} --help' lists every option"
                : command.Subcommands.Count > 0
                    ? $"unknown command '{token}' for '{verb}'; available: {visibleCommands}"
                    : $"unexpected argument '{token}'; {verb} takes options only ('{verb} --help' lists them)");
            return problems;
        }
        foreach (var error in result.Errors)
        {
            string problem = error.SymbolResult switch
            {
                OptionResult { Tokens.Count: 0 } o when o.Option.Arity.MinimumNumberOfValues > 0 =>
                    $"option {o.Option.Name} needs a value",
                OptionResult o when o.Tokens.Count > o.Option.Arity.MaximumNumberOfValues =>
                    $"option {o.Option.Name} is given {o.Tokens.Count} times; give it once",
                CommandResult c when c.Command.Subcommands.Count > 0 && c.Command.Action is null =>
                    $"'{VerbPath(c)}' needs one of: {string.Join(", ", c.Command.Subcommands.Where(s => !s.Hidden).Select(s => s.Name))}",
                _ => error.Message,
            };
            if (!problems.Contains(problem)) problems.Add(problem);
        }
        return problems;
    }

    /// <summary>The flag that <paramref name="token"/> follows (<c>--json=yes</c>, <c>--json yes</c>): the
    /// library leaves a value it cannot read as true or false unmatched, and "unexpected argument 'yes'" hides why.</summary>
    private static string? FlagGivenAValue(ParseResult result, Command command, string token)
    {
        var tokens = result.Tokens;
        for (int i = 1; i < tokens.Count; i++)
        {
            if (tokens[i].Value != token) continue;
            var previous = command.Options.FirstOrDefault(o => o.Name == tokens[i - 1].Value);
            return previous is Option<bool> ? previous.Name : null;
        }
        return null;
    }

    private static void WriteHelp(Command command, TextWriter output) =>
        command.Parse(["--help"]).Invoke(new InvocationConfiguration { Output = output });

    private static string VerbPath(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is CommandResult c; r = r.Parent) names.Insert(0, c.Command is RootCommand ? "actorring" : c.Command.Name);
        if (names.Count == 0 || names[0] != "actorring") names.Insert(0, "actorring");
        return string.Join(' ', names);
    }

    /// <summary>" (did you mean '--max-tokens'?" when one of the command's options is a typo away.</summary>
    private static string Suggestion(Command command, string unknown)
    {
        var best = command.Options.Where(o => !o.Hidden)
            .Select(o => (o.Name, Distance: EditDistance(o.Name, unknown)))
            .OrderBy(x => x.Distance)
            .FirstOrDefault();
        return best.Name is not null && best.Distance <= Math.Max(1, unknown.Length / 4) ? $" (did you mean '{best.Name}'?)" : "";
    }

    private static int EditDistance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            var current = new int[b.Length + 1];
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            previous = current;
        }
        return previous[b.Length];
    }
}
