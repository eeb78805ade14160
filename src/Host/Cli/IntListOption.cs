using System.CommandLine;

namespace ActorRing.Host.Cli;

/// <summary>
/// <c>--prompt-ids 1,403,407</c>: a comma-separated list of integers. It holds the text because the library
/// reads an absent array option as an empty array, which would look like "given, but empty";
/// <see cref="Get"/> gives null when the option is absent.
/// </summary>
internal sealed class IntListOption : Option<string?>
{
    public IntListOption(string name, string helpName, string description) : base(name)
    {
        Description = description;
        HelpName = helpName;
        Arity = ArgumentArity.ExactlyOne;
        CustomParser = r => Opt.ParseOrReport(r, text =>
        {
            Opt.ParseIntList(name, text);
            return text;
        });
    }

    public int[]? Get(ParseResult result) => result.GetValue(this) is { } text ? Opt.ParseIntList(Name, text) : null;
}
