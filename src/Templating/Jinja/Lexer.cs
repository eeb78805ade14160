using System.Globalization;
using System.Text;

namespace ActorRing.Templating.Jinja;

internal enum TokenKind { Text, VariableBegin, VariableEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, End }

/// <summary>A 1-based line and column in the template source, for error messages.</summary>
internal readonly record struct Position(int Line, int Column)
{
    public override string ToString() => $"line {Line}, column {Column}";
}

/// <param name="Literal">The parsed value of a String, Integer or Float token.</param>
internal readonly record struct Token(TokenKind Kind, string Value, Position At, object? Literal = null)
{
    public bool Is(TokenKind kind, string value) => Kind == kind && Value == value;
    public bool IsOperator(string op) => Is(TokenKind.Operator, op);
    public bool IsName(string name) => Is(TokenKind.Name, name);
}

/// <summary>
/// Splits a template into text and tag tokens, applying whitespace control the way Hugging Face configures
/// Jinja: <c>trim_blocks</c> (the first newline after a block or comment tag goes), <c>lstrip_blocks</c>
/// (spaces and tabs before a block or comment tag at the start of a line go), <c>-</c> markers (all
/// whitespace on that side goes), <c>+</c> markers (switch both off), and <c>keep_trailing_newline=False</c>.
/// </summary>
internal sealed class Lexer
{
    private enum TagKind { Variable, Block, Comment }

    /// <summary>A tag before whitespace processing: where it starts and ends, and its markers.</summary>
    private sealed record Tag(TagKind Kind, int Start, int End, bool StripBefore, bool KeepBefore, bool StripAfter, bool KeepAfter, List<Token> Tokens);

    /// <summary>Either a text run (Tag null) or a tag; text runs are trimmed once their neighbours are known.</summary>
    private sealed record Piece(int Start, int End, Tag? Tag);

    private static readonly string[] Operators =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    private readonly string _source;
    private readonly int[] _lineStarts;

    private Lexer(string source)
    {
        _source = source;
        var starts = new List<int> { 0 };
        for (var i = 0; i < source.Length; i++)
            if (source[i] == '\n') starts.Add(i + 1);
        _lineStarts = [.. starts];
    }

    public static List<Token> Tokenize(string source)
    {
        source = source.Replace("\r\n", "\n").Replace('\r', '\n');
        // keep_trailing_newline=False: Jinja drops one newline at the very end of the template.
        if (source.EndsWith('\n')) source = source[..^1];
        return new Lexer(source).Run();
    }

    private Position PositionOf(int offset)
    {
        var line = Array.BinarySearch(_lineStarts, offset);
        if (line < 0) line = ~line - 1;
        return new Position(line + 1, offset - _lineStarts[line] + 1);
    }

    private ChatTemplateException Error(int offset, string message) =>
        new($"chat template syntax error at {PositionOf(offset)}: {message}");

    private List<Token> Run()
    {
        var pieces = Split();
        var tokens = new List<Token>();
        for (var i = 0; i < pieces.Count; i++)
        {
            var piece = pieces[i];
            if (piece.Tag is null)
            {
                var text = TrimText(piece, i > 0 ? pieces[i - 1].Tag : null, i + 1 < pieces.Count ? pieces[i + 1].Tag : null);
                if (text.Length > 0) tokens.Add(new Token(TokenKind.Text, text, PositionOf(piece.Start)));
            }
            else
            {
                tokens.AddRange(piece.Tag.Tokens);
            }
        }
        tokens.Add(new Token(TokenKind.End, "", PositionOf(_source.Length)));
        return tokens;
    }

    private string TrimText(Piece piece, Tag? before, Tag? after)
    {
        var start = piece.Start;
        var end = piece.End;
        if (after is not null)
        {
            if (after.StripBefore)
            {
                while (end > start && char.IsWhiteSpace(_source[end - 1])) end--;
            }
            else if (after.Kind != TagKind.Variable && !after.KeepBefore)
            {
                // lstrip_blocks: only when nothing but spaces and tabs stand between the line start and the tag.
                var cut = end;
                while (cut > start && (_source[cut - 1] == ' ' || _source[cut - 1] == '\t')) cut--;
                var atLineStart = cut == 0 || _source[cut - 1] == '\n';
                if (atLineStart) end = cut;
            }
        }
        if (before is not null)
        {
            if (before.StripAfter)
            {
                while (start < end && char.IsWhiteSpace(_source[start])) start++;
            }
            else if (before.Kind != TagKind.Variable && !before.KeepAfter && start < end && _source[start] == '\n')
            {
                start++; // trim_blocks
            }
        }
        return start < end ? _source[start..end] : "";
    }

    private List<Piece> Split()
    {
        var pieces = new List<Piece>();
        var pos = 0;
        while (pos < _source.Length)
        {
            var open = FindTagOpen(pos);
            if (open < 0)
            {
                pieces.Add(new Piece(pos, _source.Length, null));
                break;
            }
            if (open > pos) pieces.Add(new Piece(pos, open, null));
            var tag = ReadTag(open);
            pieces.Add(new Piece(open, tag.End, tag));
            pos = tag.End;
            if (tag.Kind == TagKind.Block && tag.Tokens.Count == 3 && tag.Tokens[1].IsName("raw"))
                pos = ReadRaw(tag, pieces);
        }
        return pieces;
    }

    private int FindTagOpen(int from)
    {
        for (var i = from; i + 1 < _source.Length; i++)
            if (_source[i] == '{' && _source[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>Everything up to the matching endraw is text; the raw and endraw tags emit nothing.</summary>
    private int ReadRaw(Tag rawTag, List<Piece> pieces)
    {
        pieces[^1] = pieces[^1] with { Tag = rawTag with { Kind = TagKind.Comment, Tokens = [] } };
        var search = rawTag.End;
        while (true)
        {
            var open = _source.IndexOf("{%", search, StringComparison.Ordinal);
            if (open < 0) throw Error(rawTag.Start, "'raw' block is never closed; add {% endraw %}");
            var tag = ReadTag(open);
            if (tag.Kind == TagKind.Block && tag.Tokens.Count == 3 && tag.Tokens[1].IsName("endraw"))
            {
                pieces.Add(new Piece(rawTag.End, open, null));
                pieces.Add(new Piece(open, tag.End, tag with { Kind = TagKind.Comment, Tokens = [] }));
                return tag.End;
            }
            search = open + 2;
        }
    }

    private Tag ReadTag(int open)
    {
        var kind = _source[open + 1] switch { '{' => TagKind.Variable, '%' => TagKind.Block, _ => TagKind.Comment };
        var pos = open + 2;
        var stripBefore = pos < _source.Length && _source[pos] == '-';
        var keepBefore = pos < _source.Length && _source[pos] == '+';
        if (stripBefore || keepBefore) pos++;

        if (kind == TagKind.Comment)
        {
            var close = _source.IndexOf("#}", pos, StringComparison.Ordinal);
            if (close < 0) throw Error(open, "comment is never closed; add #}");
            var stripAfter = close > pos && _source[close - 1] == '-';
            var keepAfter = close > pos && _source[close - 1] == '+';
            return new Tag(kind, open, close + 2, stripBefore, keepBefore, stripAfter, keepAfter, []);
        }

        var tokens = new List<Token>
        {
            new(kind == TagKind.Variable ? TokenKind.VariableBegin : TokenKind.BlockBegin, _source[open..pos], PositionOf(open)),
        };
        var closer = kind == TagKind.Variable ? "}}" : "%}";
        var depth = 0;
        while (true)
        {
            while (pos < _source.Length && char.IsWhiteSpace(_source[pos])) pos++;
            if (pos >= _source.Length)
                throw Error(open, $"tag is never closed; add {closer}");
            if (depth == 0)
            {
                var marker = _source[pos] is '-' or '+' ? _source[pos] : '\0';
                var closeAt = marker == '\0' ? pos : pos + 1;
                if (string.CompareOrdinal(_source, closeAt, closer, 0, 2) == 0)
                {
                    tokens.Add(new Token(kind == TagKind.Variable ? TokenKind.VariableEnd : TokenKind.BlockEnd, closer, PositionOf(pos)));
                    return new Tag(kind, open, closeAt + 2, stripBefore, keepBefore, marker == '-', marker == '+', tokens);
                }
            }
            var token = ReadExpressionToken(ref pos);
            if (token.Kind == TokenKind.Operator)
            {
                if (token.Value is "(" or "[" or "{") depth++;
                else if (token.Value is ")" or "]" or "}") depth = Math.Max(0, depth - 1);
            }
            tokens.Add(token);
        }
    }

    private Token ReadExpressionToken(ref int pos)
    {
        var start = pos;
        var at = PositionOf(start);
        var c = _source[pos];
        if (char.IsLetter(c) || c == '_')
        {
            while (pos < _source.Length && (char.IsLetterOrDigit(_source[pos]) || _source[pos] == '_')) pos++;
            return new Token(TokenKind.Name, _source[start..pos], at);
        }
        if (char.IsAsciiDigit(c))
        {
            while (pos < _source.Length && (char.IsAsciiDigit(_source[pos]) || _source[pos] == '_')) pos++;
            var isFloat = false;
            if (pos + 1 < _source.Length && _source[pos] == '.' && char.IsAsciiDigit(_source[pos + 1]))
            {
                isFloat = true;
                pos++;
                while (pos < _source.Length && char.IsAsciiDigit(_source[pos])) pos++;
            }
            if (pos < _source.Length && _source[pos] is 'e' or 'E')
            {
                var save = pos;
                pos++;
                if (pos < _source.Length && _source[pos] is '+' or '-') pos++;
                if (pos < _source.Length && char.IsAsciiDigit(_source[pos]))
                {
                    isFloat = true;
                    while (pos < _source.Length && char.IsAsciiDigit(_source[pos])) pos++;
                }
                else pos = save;
            }
            var text = _source[start..pos].Replace("_", "");
            return isFloat
                ? new Token(TokenKind.Float, text, at, double.Parse(text, CultureInfo.InvariantCulture))
                : new Token(TokenKind.Integer, text, at, long.TryParse(text, CultureInfo.InvariantCulture, out var n)
                    ? n : throw Error(start, $"integer {text} is too large"));
        }
        if (c is '\'' or '"')
            return new Token(TokenKind.String, "", at, ReadString(ref pos));
        foreach (var op in Operators)
            if (string.CompareOrdinal(_source, pos, op, 0, op.Length) == 0)
            {
                pos += op.Length;
                return new Token(TokenKind.Operator, op, at);
            }
        throw Error(start, $"unexpected character '{c}'");
    }

    /// <summary>A Python string literal: backslash escapes as Python reads them.</summary>
    private string ReadString(ref int pos)
    {
        var start = pos;
        var quote = _source[pos++];
        var text = new StringBuilder();
        while (true)
        {
            if (pos >= _source.Length) throw Error(start, $"string is never closed; add {quote}");
            var c = _source[pos++];
            if (c == quote) return text.ToString();
            if (c != '\\' || pos >= _source.Length)
            {
                text.Append(c);
                continue;
            }
            var e = _source[pos++];
            switch (e)
            {
                case 'n': text.Append('\n'); break;
                case 't': text.Append('\t'); break;
                case 'r': text.Append('\r'); break;
                case '0': text.Append('\0'); break;
                case 'a': text.Append('\a'); break;
                case 'b': text.Append('\b'); break;
                case 'f': text.Append('\f'); break;
                case 'v': text.Append('\v'); break;
                case '\\': case '\'': case '"': text.Append(e); break;
                case '\n': break; // a backslash-newline continues the literal
                case 'x' or 'u' or 'U':
                    var digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (pos + digits > _source.Length
                        || !int.TryParse(_source.AsSpan(pos, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code))
                        throw Error(pos - 2, $"bad \\{e} escape in string; it needs {digits} hex digits");
                    text.Append(char.ConvertFromUtf32(code));
                    pos += digits;
                    break;
                default: text.Append('\\').Append(e); break; // Python keeps unknown escapes as written
            }
        }
    }
}
