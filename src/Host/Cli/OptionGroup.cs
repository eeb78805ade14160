using System.CommandLine;
using System.Reflection;

namespace ActorRing.Host.Cli;

/// <summary>
/// A verb's options, declared as public readonly fields of a subclass: an <see cref="Option"/>, or another
/// group whose options it includes (the groups several verbs share). Declaring the field is all it takes to
/// add an option: <see cref="AddTo"/> registers every field, in declaration order, which is the order --help
/// lists them in. A fresh group per command line, so no option instance is shared between parses.
/// </summary>
internal abstract class OptionGroup
{
    private IReadOnlyList<Option>? _options;

    public IReadOnlyList<Option> Options => _options ??= GetType()
        .GetFields(BindingFlags.Public | BindingFlags.Instance)
        .OrderBy(f => f.MetadataToken) // declaration order
        .SelectMany(f => f.GetValue(this) switch
        {
            Option option => [option],
            OptionGroup group => group.Options,
            _ => Array.Empty<Option>(),
        })
        .ToList();

    public void AddTo(Command command)
    {
        foreach (var option in Options) command.Options.Add(option);
    }

    /// <summary>The options of this group the user gave, spelled again (<c>--name=value</c>, or <c>--flag</c>),
    /// to pass them on to a child process that takes the same options.</summary>
    public IEnumerable<string> GivenArguments(ParseResult result)
    {
        foreach (var option in Options)
        {
            if (result.GetResult(option) is not { Implicit: false } given) continue;
            yield return given.Tokens.Count == 0 ? option.Name : $"{option.Name}={given.Tokens[^1].Value}";
        }
    }
}
