using System.Buffers;

namespace ActorRing.Model.Tokenization;

/// <summary>
/// Finds the added tokens of a <c>tokenizer.json</c> (&lt;|eot_id|&gt;, &lt;|im_end|&gt;, &lt;think&gt;, Gemma's
/// "\n\n") in raw text, leftmost and then longest first, as the Rust crate's added vocabulary does, honouring
/// lstrip/rstrip (the token swallows the whitespace beside it) and single_word (only between non-word characters).
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, Token[]> _byFirstChar;
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    private readonly SearchValues<char> _firstChars;

    public AddedTokenMatcher(IReadOnlyList<Token> tokens)
    {
        Tokens = tokens;
        foreach (var t in tokens)
        {
            _ids.TryAdd(t.Content, t.Id);
        }

        // Longest first, so "<|end|>" never shadows "<|end_of_text|>" at the same position.
        _byFirstChar = tokens.GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());

        // A vectorized scan for the first characters skips the text between candidates in bulk.
        _firstChars = SearchValues.Create([.. _byFirstChar.Keys]);
    }

    public IReadOnlyList<Token> Tokens { get; }

    public bool TryGetId(string content, out int id) => _ids.TryGetValue(content, out id);

    /// <summary>The matches in text order; Start/Length include any whitespace swallowed by lstrip/rstrip.</summary>
    public IEnumerable<(int Start, int Length, int Id)> Find(string text)
    {
        if (_byFirstChar.Count == 0)
        {
            yield break;
        }

        var consumedUpTo = 0;
        var i = 0;
        while (i < text.Length)
        {
            var next = text.AsSpan(i).IndexOfAny(_firstChars);
            if (next < 0)
            {
                yield break;
            }

            i += next;
            if (Match(text, i, _byFirstChar[text[i]]) is { } token)
            {
                var start = i;
                var end = i + token.Content.Length;
                if (token.LStrip)
                {
                    while (start > consumedUpTo && char.IsWhiteSpace(text[start - 1]))
                    {
                        start--;
                    }
                }

                if (token.RStrip)
                {
                    while (end < text.Length && char.IsWhiteSpace(text[end]))
                    {
                        end++;
                    }
                }

                yield return (start, end - start, token.Id);
                consumedUpTo = end;
                i = end;
                continue;
            }

            i++;
        }
    }

    private static Token? Match(string text, int at, Token[] candidates)
    {
        foreach (var t in candidates)
        {
            if (string.CompareOrdinal(text, at, t.Content, 0, t.Content.Length) != 0)
            {
                continue;
            }

            if (t.SingleWord && ((at > 0 && IsWordChar(text[at - 1])) || (at + t.Content.Length < text.Length && IsWordChar(text[at + t.Content.Length]))))
            {
                continue;
            }

            return t;
        }

        return null;
    }

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';

    /// <param name="Special">A control token: skipped when decoding.</param>
    public sealed record Token(string Content, int Id, bool Special, bool LStrip, bool RStrip, bool SingleWord);
}
