namespace ActorRing.Templating;

/// <summary>
/// Separates a reasoning model's thinking from its answer, as vLLM's reasoning parsers (qwen3, deepseek_r1) and
/// DeepSeek's API do: what the model writes between <c>&lt;think&gt;</c> and <c>&lt;/think&gt;</c> is its reasoning
/// (<c>reasoning_content</c>), what follows is the answer (<c>content</c>). Text is pushed as it is generated and
/// comes out in pieces as soon as it is known which side it is on; the first characters of a tag are held until the
/// next piece says whether they are one.
/// <para>
/// Where the answer starts depends on the prompt, which is why the splitter is made from it
/// (<see cref="ForPrompt"/>): DeepSeek-R1's template opens the think block itself (the prompt ends with
/// <c>&lt;think&gt;\n</c>), so the answer starts inside it; Qwen3's lets the model open it, or, with
/// <c>enable_thinking: false</c>, writes an empty closed block, so the answer starts as content.
/// </para>
/// </summary>
public sealed class ThinkSplitter
{
    public const string Open = "<think>", Close = "</think>";

    private enum Side : byte { Undecided, Reasoning, Content }

    private Side _side;
    private string _pending = "";
    private bool _reasoningStarted, _contentStarted;

    private ThinkSplitter(bool startsInside)
    {
        _side = startsInside ? Side.Reasoning : Side.Undecided;
        StartsInside = startsInside;
    }

    /// <summary>The answer starts inside a think block the prompt opened.</summary>
    public bool StartsInside { get; }

    /// <summary>Whether a template teaches a think block at all (writes both tags somewhere).</summary>
    public static bool Teaches(string templateSource) =>
        templateSource.Contains(Open, StringComparison.Ordinal) && templateSource.Contains(Close, StringComparison.Ordinal);

    /// <summary>A splitter for the answer to <paramref name="promptText"/>: inside reasoning when the prompt's last think
    /// block is open.</summary>
    public static ThinkSplitter ForPrompt(string promptText)
    {
        int open = promptText.LastIndexOf(Open, StringComparison.Ordinal);
        return new ThinkSplitter(open >= 0 && promptText.IndexOf(Close, open, StringComparison.Ordinal) < 0);
    }

    /// <summary>Takes the next piece of the answer and returns what is now known to be reasoning and what answer.</summary>
    public (string Reasoning, string Content) Push(string text)
    {
        _pending += text;
        string reasoning = "", content = "";
        while (true)
        {
            switch (_side)
            {
                case Side.Undecided:
                {
                    // Before anything but whitespace: it is a think block if the text opens one, else the answer.
                    string trimmed = _pending.TrimStart();
                    if (trimmed.Length == 0 || (trimmed.Length < Open.Length && Open.StartsWith(trimmed, StringComparison.Ordinal)))
                        return (reasoning, content);
                    if (trimmed.StartsWith(Open, StringComparison.Ordinal))
                    {
                        _pending = trimmed[Open.Length..];
                        _side = Side.Reasoning;
                        continue;
                    }
                    _side = Side.Content;
                    continue;
                }
                case Side.Reasoning:
                {
                    int close = _pending.IndexOf(Close, StringComparison.Ordinal);
                    if (close >= 0)
                    {
                        reasoning += Reasoning(_pending[..close], final: true);
                        _pending = _pending[(close + Close.Length)..];
                        _side = Side.Content;
                        continue;
                    }
                    int keep = PartialTagLength(_pending, Close);
                    reasoning += Reasoning(_pending[..^keep], final: false);
                    _pending = _pending[^keep..];
                    return (reasoning, content);
                }
                default:
                    content += Content(_pending);
                    _pending = "";
                    return (reasoning, content);
            }
        }
    }

    /// <summary>The answer ended: whatever was held comes out on the side it was on (a cut-off think block is reasoning).</summary>
    public (string Reasoning, string Content) Finish()
    {
        string rest = _pending;
        _pending = "";
        return _side switch
        {
            Side.Reasoning => (Reasoning(rest, final: true), ""),
            _ => ("", Content(rest)),
        };
    }

    /// <summary>Reasoning text without the line breaks after the opening tag and before the closing one. Line breaks
    /// at the end of a piece may be those before the closing tag, so they are held until more reasoning follows.</summary>
    private string Reasoning(string text, bool final)
    {
        if (!_reasoningStarted)
        {
            text = text.TrimStart('\n');
            if (text.Length == 0) return "";
            _reasoningStarted = true;
        }
        string body = text.TrimEnd('\n');
        if (body.Length == 0)
        {
            _heldBreaks = final ? 0 : _heldBreaks + text.Length;
            return "";
        }
        string result = new string('\n', _heldBreaks) + body;
        _heldBreaks = final ? 0 : text.Length - body.Length;
        return result;
    }

    private int _heldBreaks;

    /// <summary>Answer text without the blank lines between the think block and the answer.</summary>
    private string Content(string text)
    {
        if (_contentStarted) return text;
        text = text.TrimStart('\n', ' ');
        _contentStarted = text.Length > 0;
        return text;
    }

    /// <summary>The length of the longest suffix of <paramref name="text"/> that is a proper prefix of <paramref name="tag"/>.</summary>
    private static int PartialTagLength(string text, string tag)
    {
        for (int keep = Math.Min(tag.Length - 1, text.Length); keep > 0; keep--)
        {
            if (text.AsSpan(text.Length - keep).SequenceEqual(tag.AsSpan(0, keep))) return keep;
        }
        return 0;
    }
}
