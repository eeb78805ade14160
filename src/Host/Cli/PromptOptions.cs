using System.CommandLine;

namespace ActorRing.Host.Cli;

/// <summary>One prompt given on the command line and how its completion is printed (generate, serve's one-shot mode).</summary>
internal sealed class PromptOptions : OptionGroup
{
    public readonly Option<string?> Prompt = Opt.Text("--prompt", "TEXT", "The prompt, encoded with the model's tokenizer (BOS first)");
    public readonly IntListOption PromptIds = Opt.IntList("--prompt-ids", "1,403,...", "The prompt as token ids");
    public readonly Option<bool> Json = Opt.Flag("--json", "Print one JSON object (ids, text, timing) instead of the text");

    public bool Given(ParseResult result) => result.GetValue(Prompt) is not null || PromptIds.Get(result) is not null;

    public void EnsureOneOf(ParseResult result)
    {
        if (result.GetValue(Prompt) is not null && PromptIds.Get(result) is not null)
            throw new UsageException("give either --prompt or --prompt-ids, not both");
    }
}
