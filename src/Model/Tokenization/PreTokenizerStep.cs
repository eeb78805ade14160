using System.Text.RegularExpressions;

namespace ActorRing.Model.Tokenization;

/// <summary>A piece of text on its way to the BPE model; <see cref="AtTextStart"/> marks the piece that begins the input.</summary>
internal readonly record struct TextPiece(string Text, bool AtTextStart);

/// <summary>
/// One pre-tokenizer of a <c>tokenizer.json</c> (Split, Metaspace, ByteLevel's regex), applied to every piece the
/// previous one produced, with the semantics of the Rust <c>tokenizers</c> crate.
/// </summary>
internal abstract class PreTokenizerStep
{
    public abstract void Apply(TextPiece piece, List<TextPiece> output);

    /// <summary>How a Split keeps its matches: the crate's SplitDelimiterBehavior.</summary>
    public enum Behavior
    {
        Isolated,
        Removed,
        MergedWithPrevious,
        MergedWithNext,
        Contiguous,
    }

    /// <summary>Splits each piece around the matches of a pattern.</summary>
    public sealed class Split(CodePointRegex regex, Behavior behavior, bool invert) : PreTokenizerStep
    {
        [ThreadStatic]
        private static List<(int Start, int Length)>? t_matches;

        public override void Apply(TextPiece piece, List<TextPiece> output)
        {
            var matches = t_matches ??= [];
            matches.Clear();
            regex.Matches(piece.Text, matches);

            if (behavior == Behavior.Isolated)
            {
                // The common case (every byte-level pattern): matches and gaps alike become pieces, in order.
                var end = 0;
                foreach (var (start, length) in matches)
                {
                    if (start > end)
                    {
                        output.Add(new TextPiece(piece.Text[end..start], piece.AtTextStart && end == 0));
                    }

                    output.Add(new TextPiece(piece.Text.Substring(start, length), piece.AtTextStart && start == 0));
                    end = start + length;
                }

                if (end < piece.Text.Length)
                {
                    output.Add(new TextPiece(piece.Text[end..], piece.AtTextStart && end == 0));
                }

                return;
            }

            // (start, length, isDelimiter) for every match and every gap, in order; invert swaps the roles.
            var parts = new List<(int Start, int Length, bool Delimiter)>(matches.Count * 2 + 1);
            var last = 0;
            foreach (var (start, length) in matches)
            {
                if (start > last)
                {
                    parts.Add((last, start - last, invert));
                }

                parts.Add((start, length, !invert));
                last = start + length;
            }

            if (last < piece.Text.Length)
            {
                parts.Add((last, piece.Text.Length - last, invert));
            }

            // Pending merged piece for MergedWithNext / Contiguous.
            var pendingStart = -1;
            var pendingLength = 0;
            var previousWasDelimiter = false;
            void Emit(int start, int length)
            {
                if (length > 0)
                {
                    output.Add(new TextPiece(piece.Text.Substring(start, length), piece.AtTextStart && start == 0));
                }
            }

            for (var i = 0; i < parts.Count; i++)
            {
                var (start, length, delimiter) = parts[i];
                switch (behavior)
                {
                    case Behavior.Isolated:
                        Emit(start, length);
                        break;
                    case Behavior.Removed:
                        if (!delimiter)
                        {
                            Emit(start, length);
                        }

                        break;
                    case Behavior.MergedWithPrevious:
                        // A delimiter joins the piece before it, if that piece is not itself a delimiter.
                        if (delimiter && output.Count > 0 && i > 0 && !parts[i - 1].Delimiter)
                        {
                            var prev = output[^1];
                            output[^1] = prev with { Text = prev.Text + piece.Text.Substring(start, length) };
                        }
                        else
                        {
                            Emit(start, length);
                        }

                        break;
                    case Behavior.MergedWithNext:
                        if (delimiter)
                        {
                            if (pendingStart >= 0)
                            {
                                Emit(pendingStart, pendingLength);
                            }

                            pendingStart = start;
                            pendingLength = length;
                        }
                        else if (pendingStart >= 0)
                        {
                            Emit(pendingStart, pendingLength + length);
                            pendingStart = -1;
                        }
                        else
                        {
                            Emit(start, length);
                        }

                        break;
                    case Behavior.Contiguous:
                        if (delimiter && previousWasDelimiter && pendingStart >= 0)
                        {
                            pendingLength += length;
                        }
                        else
                        {
                            if (pendingStart >= 0)
                            {
                                Emit(pendingStart, pendingLength);
                            }

                            pendingStart = start;
                            pendingLength = length;
                        }

                        previousWasDelimiter = delimiter;
                        break;
                }
            }

            if (pendingStart >= 0)
            {
                Emit(pendingStart, pendingLength);
            }
        }
    }

    /// <summary>
    /// SentencePiece's whitespace handling as a pre-tokenizer: spaces become the replacement ("▁"), a "▁" is
    /// prepended (always, or only to the start of the input for prepend_scheme "first"), and with split each
    /// "▁" starts a new piece.
    /// </summary>
    public sealed class Metaspace(string replacement, bool prependAlways, bool prependFirst, bool split) : PreTokenizerStep
    {
        public override void Apply(TextPiece piece, List<TextPiece> output)
        {
            var text = piece.Text.Replace(" ", replacement, StringComparison.Ordinal);
            if ((prependAlways || (prependFirst && piece.AtTextStart)) && !text.StartsWith(replacement, StringComparison.Ordinal))
            {
                text = replacement + text;
            }

            if (!split)
            {
                output.Add(piece with { Text = text });
                return;
            }

            var start = 0;
            for (var i = text.IndexOf(replacement, 1, StringComparison.Ordinal); i >= 0 && i < text.Length; i = text.IndexOf(replacement, i + 1, StringComparison.Ordinal))
            {
                output.Add(new TextPiece(text[start..i], piece.AtTextStart && start == 0));
                start = i;
            }

            if (start < text.Length)
            {
                output.Add(new TextPiece(text[start..], piece.AtTextStart && start == 0));
            }
        }
    }

    /// <summary>ByteLevel's optional prefix space (its regex split is a separate <see cref="Split"/> step).</summary>
    public sealed class PrefixSpace : PreTokenizerStep
    {
        public override void Apply(TextPiece piece, List<TextPiece> output) =>
            output.Add(piece.Text.StartsWith(' ') ? piece : piece with { Text = " " + piece.Text });
    }

    public static CodePointRegex Compile(string pattern, Func<string, Exception> error)
    {
        try
        {
            // Compiled: the pre-tokenizer regex is most of the encoding time for byte-level BPE.
            return new CodePointRegex(new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled));
        }
        catch (ArgumentException e)
        {
            throw error($"has a pre-tokenizer regex that .NET cannot compile ({e.Message}): {pattern}");
        }
    }
}
