using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace ActorRing.Model.Tokenization;

/// <summary>
/// A pre-tokenizer regex that sees code points, as the Rust regex engines behind Hugging Face tokenizers do.
/// .NET matches UTF-16 units, so a letter outside the BMP (𠀀, 𝐀) is two surrogates that match neither \p{L}
/// nor \p{N}, and "\p{N}{1,3}" would count 𝟏 twice. Each supplementary code point is therefore replaced, for
/// matching only, by one BMP stand-in of the same Unicode category, and match positions are mapped back.
/// </summary>
internal sealed class CodePointRegex
{
    // One stand-in per UnicodeCategory, taken from blocks that the pre-tokenizer patterns in use never name
    // literally (they name ASCII, \r\n and the CJK/kana ranges).
    private static readonly char[] StandIn = BuildStandIns();

    private readonly Regex _regex;

    public CodePointRegex(Regex regex)
    {
        _regex = regex;
    }

    /// <summary>Appends (start, length) of each non-empty match, in <paramref name="text"/>'s own indices.</summary>
    public void Matches(string text, List<(int Start, int Length)> output)
    {
        var hasSupplementary = false;
        foreach (var c in text)
        {
            if (char.IsSurrogate(c))
            {
                hasSupplementary = true;
                break;
            }
        }

        if (!hasSupplementary)
        {
            // EnumerateMatches allocates no Match objects; with many short pieces that is a third of the time.
            foreach (var m in _regex.EnumerateMatches(text))
            {
                if (m.Length > 0)
                {
                    output.Add((m.Index, m.Length));
                }
            }

            return;
        }

        // shadowToText[i] is where shadow char i starts in text; one extra entry marks the end.
        var shadow = new StringBuilder(text.Length);
        var shadowToText = new List<int>(text.Length + 1);
        for (var i = 0; i < text.Length;)
        {
            shadowToText.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                var category = CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]));
                shadow.Append(StandIn[(int)category]);
                i += 2;
            }
            else
            {
                // Lone surrogates stay: both engines see them as one code point of category Cs.
                shadow.Append(text[i]);
                i++;
            }
        }

        shadowToText.Add(text.Length);
        foreach (var m in _regex.EnumerateMatches(shadow.ToString()))
        {
            if (m.Length > 0)
            {
                var start = shadowToText[m.Index];
                output.Add((start, shadowToText[m.Index + m.Length] - start));
            }
        }
    }

    private static char[] BuildStandIns()
    {
        var result = new char[32];
        var found = new bool[32];

        // Scan from the Latin Extended-B block upward, skipping the ranges a pattern might name.
        for (var c = 0x0180; c < 0xD800; c++)
        {
            if (c is >= 0x3000 and < 0xA000)
            {
                continue;
            }

            var category = (int)CharUnicodeInfo.GetUnicodeCategory((char)c);
            if (!found[category])
            {
                found[category] = true;
                result[category] = (char)c;
            }
        }

        // Surrogate and PrivateUse have no member in the scanned range. No supplementary code point is a surrogate,
        // and no pattern class (\p{L}, \p{N}, \p{P}, \p{S}, \p{M}, \s) holds private-use or unassigned code
        // points, so an unassigned stand-in matches exactly what the real one would.
        for (var i = 0; i < result.Length; i++)
        {
            if (!found[i])
            {
                result[i] = '\u0378';
            }
        }

        return result;
    }
}
