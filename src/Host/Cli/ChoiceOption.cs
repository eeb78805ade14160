using System.CommandLine;

namespace ActorRing.Host.Cli;

/// <summary>
/// An option that takes one of a few spelled values (<c>--dtype f32|bf16</c>). It holds the text, so --help
/// shows the default as a user types it ("f32", not the enum's "F32"); <see cref="Get"/> gives the typed value.
/// A value <paramref name="parse"/> refuses is a parse error, reported before the verb runs.
/// </summary>
internal sealed class ChoiceOption<T> : Option<string>
{
    private readonly Func<string, T> _parse;

    public ChoiceOption(string name, string choices, string description, string defaultValue, Func<string, T> parse) : base(name)
    {
        _parse = parse;
        Description = description;
        HelpName = choices;
        Arity = ArgumentArity.ExactlyOne;
        DefaultValueFactory = _ => defaultValue;
        CustomParser = r => Opt.ParseOrReport(r, text =>
        {
            parse(text);
            return text;
        });
    }

    public T Get(ParseResult result) => _parse(result.GetValue(this)!);
}
