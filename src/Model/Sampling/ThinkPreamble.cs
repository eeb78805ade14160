namespace ActorRing.Model.Sampling;

/// <summary>How a JSON answer may begin with the think block a reasoning model writes first.</summary>
public enum ThinkBlock : byte
{
    /// <summary>JSON from the first token.</summary>
    None,

    /// <summary>The prompt opened a think block (DeepSeek-R1's template): the JSON comes after <c>&lt;/think&gt;</c>.</summary>
    Open,

    /// <summary>The model may open one itself (Qwen3's template): the answer starts with <c>&lt;think&gt;</c> or with the JSON.</summary>
    Optional,
}

/// <summary>
/// The bytes before a JSON answer (<see cref="JsonConstraint"/>): a think block that the prompt opened or that the
/// answer may open, any text inside it, its closing tag, and the blank lines before the JSON. vLLM's structured
/// outputs hold a reasoning model to the grammar only once its reasoning ends, the same way: held to JSON from its
/// first token, such a model cannot think first. The text inside the block is free; its first
/// <c>&lt;/think&gt;</c> ends it.
/// </summary>
internal struct ThinkPreamble
{
    private const string OpenTag = "<think>", CloseTag = "</think>";

    private enum Phase : byte { Start, Opening, Thinking, Gap, Done }

    private Phase _phase;
    private byte _matched; // Opening: bytes of the opening tag read; Thinking: bytes of the closing tag read

    public ThinkPreamble(ThinkBlock block) => _phase = block switch
    {
        ThinkBlock.Open => Phase.Thinking,
        ThinkBlock.Optional => Phase.Start,
        _ => Phase.Done,
    };

    /// <summary>The JSON has begun: every byte from here on is the JSON's.</summary>
    public readonly bool Done => _phase == Phase.Done;

    /// <summary>Inside the block with no part of its closing tag read: a token without '&lt;' goes on, whatever it holds.</summary>
    public readonly bool FreeText => _phase == Phase.Thinking && _matched == 0;

    /// <summary>What a byte is to the preamble.</summary>
    public enum Read : byte { Taken, Refused, Json }

    public Read TryRead(byte b)
    {
        switch (_phase)
        {
            case Phase.Start or Phase.Gap:
                if (b is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t') return Read.Taken;
                if (_phase == Phase.Start && b == (byte)'<')
                {
                    (_phase, _matched) = (Phase.Opening, 1);
                    return Read.Taken;
                }
                _phase = Phase.Done;
                return Read.Json;
            case Phase.Opening:
                if (b != OpenTag[_matched]) return Read.Refused;
                if (++_matched == OpenTag.Length) (_phase, _matched) = (Phase.Thinking, 0);
                return Read.Taken;
            case Phase.Thinking:
                // The closing tag starts with the only '<' in it, so a mismatch restarts at 0, or at 1 on a '<'.
                if (b == CloseTag[_matched])
                {
                    if (++_matched == CloseTag.Length) (_phase, _matched) = (Phase.Gap, 0);
                }
                else
                {
                    _matched = (byte)(b == (byte)'<' ? 1 : 0);
                }
                return Read.Taken;
            default:
                return Read.Json;
        }
    }
}
