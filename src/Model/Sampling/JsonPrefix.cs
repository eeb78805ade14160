namespace ActorRing.Model.Sampling;

/// <summary>
/// Where a JSON object's text stands after some UTF-8 bytes, as far as it matters for what may follow: the
/// state of a pushdown recognizer for RFC 8259 whose top-level value must be an object (OpenAI's
/// <c>response_format: {"type": "json_object"}</c>). A value type, so trying a token's bytes on a copy leaves
/// the original as it was: <see cref="JsonConstraint{TPrefix}"/> tries every vocabulary entry from the same state.
/// <para>
/// Two limits keep a poorly trained model from wandering where the grammar alone would let it. Whitespace between
/// tokens is nothing, one space, or a line break and at most <see cref="MaxIndent"/> spaces or tabs of indentation
/// (the rule of llama.cpp's JSON grammar): with any whitespace allowed, the bundled story model spent its whole
/// max_tokens on spaces and line breaks. And at most <see cref="MaxDepth"/> objects and arrays nest (the nesting is
/// one bit per level in a 64-bit word). Bytes of 0x80 and above are accepted inside strings as they come: a
/// multi-byte character may span tokens.
/// </para>
/// </summary>
public struct JsonPrefix : IJsonPrefix
{
    /// <summary>The deepest nesting of objects and arrays allowed.</summary>
    public const int MaxDepth = 64;

    /// <summary>The most spaces or tabs allowed after a line break between tokens.</summary>
    public const int MaxIndent = 20;

    private enum Mode : byte
    {
        Start,          // nothing yet but whitespace: '{' must come
        KeyOrClose,     // after '{': a key or '}'
        Key,            // after ',' in an object: a key
        Colon,          // after a key
        Value,          // after ':' or after ',' in an array
        ValueOrClose,   // after '[': a value or ']'
        AfterValue,     // after a value inside an object or array: ',' or the closing bracket
        String,
        Escape,         // after '\' in a string
        Unicode,        // in the four hex digits of \uXXXX
        Minus, Zero, Integer, Point, Fraction, Exponent, ExponentSign, ExponentDigits, // a number, by RFC 8259's grammar
        Literal,        // inside true, false or null
        Complete,       // the top-level object is closed: nothing more may come
    }

    private static readonly byte[][] Literals = ["true"u8.ToArray(), "false"u8.ToArray(), "null"u8.ToArray()];

    private ulong _objects;   // bit d set: nesting level d is an object (clear: an array)
    private byte _depth;      // open objects and arrays
    private Mode _mode;
    private bool _inKey;      // the string being read is an object key
    private byte _literal;    // which of Literals is being read
    private byte _index;      // bytes of the literal read, or hex digits of \uXXXX read
    private byte _whitespace; // whitespace bytes in a row: one space, or a line break and its indentation
    private bool _lineBreak;  // the run began with a line break

    /// <summary>Nothing read yet.</summary>
    public static JsonPrefix Empty => default;

    /// <summary>The bytes read so far are a whole JSON object (with any whitespace before it).</summary>
    public readonly bool IsComplete => _mode == Mode.Complete;

    /// <summary>Inside a string, outside an escape: any bytes without a quote, a backslash or a control character go on.</summary>
    public readonly bool InStringText => _mode == Mode.String;

    /// <summary>Whether <paramref name="bytes"/> would be plain string text (see <see cref="InStringText"/>).</summary>
    public static bool IsPlainStringText(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            if (b < 0x20 || b == (byte)'"' || b == (byte)'\\') return false;
        }
        return true;
    }

    /// <summary>Reads <paramref name="bytes"/>; false (and the state undefined) when they cannot continue a JSON object.</summary>
    public bool TryRead(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            if (!TryRead(b)) return false;
        }
        return true;
    }

    private bool TryRead(byte b)
    {
        switch (_mode)
        {
            case Mode.String:
                if (b == (byte)'"')
                {
                    _mode = _inKey ? Mode.Colon : Mode.AfterValue;
                    if (!_inKey) EndValue();
                    return true;
                }
                if (b == (byte)'\\') _mode = Mode.Escape;
                return b >= 0x20; // control characters must be escaped
            case Mode.Escape:
                if (b == (byte)'u')
                {
                    _mode = Mode.Unicode;
                    _index = 0;
                    return true;
                }
                _mode = Mode.String;
                return b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t';
            case Mode.Unicode:
                if (!IsHexDigit(b)) return false;
                if (++_index == 4) _mode = Mode.String;
                return true;
            case Mode.Literal:
                var literal = Literals[_literal];
                if (b != literal[_index]) return false;
                if (++_index == literal.Length) EndValue();
                return true;
            case Mode.Minus:
                if (b == (byte)'0') _mode = Mode.Zero;
                else if (IsDigit(b)) _mode = Mode.Integer;
                else return false;
                return true;
            case Mode.Zero or Mode.Integer:
                if (IsDigit(b) && _mode == Mode.Integer) return true;
                if (b == (byte)'.') { _mode = Mode.Point; return true; }
                if (b is (byte)'e' or (byte)'E') { _mode = Mode.Exponent; return true; }
                return EndNumber(b);
            case Mode.Point:
                if (!IsDigit(b)) return false;
                _mode = Mode.Fraction;
                return true;
            case Mode.Fraction:
                if (IsDigit(b)) return true;
                if (b is (byte)'e' or (byte)'E') { _mode = Mode.Exponent; return true; }
                return EndNumber(b);
            case Mode.Exponent:
                if (b is (byte)'+' or (byte)'-') { _mode = Mode.ExponentSign; return true; }
                if (!IsDigit(b)) return false;
                _mode = Mode.ExponentDigits;
                return true;
            case Mode.ExponentSign:
                if (!IsDigit(b)) return false;
                _mode = Mode.ExponentDigits;
                return true;
            case Mode.ExponentDigits:
                return IsDigit(b) || EndNumber(b);
            case Mode.Complete:
                return false;
        }

        // Between tokens: whitespace, or the structural byte the mode expects.
        if (b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r')
        {
            if (_whitespace == 0)
            {
                _lineBreak = b == (byte)'\n';
                _whitespace = 1;
                return b is (byte)' ' or (byte)'\n';
            }
            return _lineBreak && (b is (byte)' ' or (byte)'\t') && _whitespace++ <= MaxIndent; // _whitespace - 1 indentation bytes so far
        }
        _whitespace = 0;
        switch (_mode)
        {
            case Mode.Start:
                return b == (byte)'{' && Open(isObject: true);
            case Mode.KeyOrClose:
                if (b == (byte)'}') return Close();
                goto case Mode.Key;
            case Mode.Key:
                if (b != (byte)'"') return false;
                _mode = Mode.String;
                _inKey = true;
                return true;
            case Mode.Colon:
                if (b != (byte)':') return false;
                _mode = Mode.Value;
                return true;
            case Mode.ValueOrClose:
                if (b == (byte)']') return Close();
                goto case Mode.Value;
            case Mode.Value:
                return StartValue(b);
            case Mode.AfterValue:
                bool inObject = (_objects >> (_depth - 1) & 1) != 0;
                if (b == (byte)',')
                {
                    _mode = inObject ? Mode.Key : Mode.Value;
                    return true;
                }
                return b == (inObject ? (byte)'}' : (byte)']') && Close();
            default:
                return false;
        }
    }

    private bool StartValue(byte b)
    {
        switch (b)
        {
            case (byte)'{': return Open(isObject: true);
            case (byte)'[': return Open(isObject: false);
            case (byte)'"':
                _mode = Mode.String;
                _inKey = false;
                return true;
            case (byte)'-': _mode = Mode.Minus; return true;
            case (byte)'0': _mode = Mode.Zero; return true;
            case (byte)'t' or (byte)'f' or (byte)'n':
                _mode = Mode.Literal;
                _literal = b switch { (byte)'t' => 0, (byte)'f' => 1, _ => 2 };
                _index = 1;
                return true;
            default:
                if (!IsDigit(b)) return false;
                _mode = Mode.Integer;
                return true;
        }
    }

    private bool Open(bool isObject)
    {
        if (_depth == MaxDepth) return false;
        if (isObject) _objects |= 1UL << _depth;
        else _objects &= ~(1UL << _depth);
        _depth++;
        _mode = isObject ? Mode.KeyOrClose : Mode.ValueOrClose;
        return true;
    }

    /// <summary>Closes the innermost object or array (the caller matched the bracket against it).</summary>
    private bool Close()
    {
        _depth--;
        EndValue();
        return true;
    }

    /// <summary>A value ended: the enclosing object or array goes on, or the top-level object is whole.</summary>
    private void EndValue() => _mode = _depth == 0 ? Mode.Complete : Mode.AfterValue;

    /// <summary>A number ends at the first byte that cannot continue it, which is then read as what follows the value.</summary>
    private bool EndNumber(byte b)
    {
        EndValue();
        return TryRead(b);
    }

    private static bool IsDigit(byte b) => b - (uint)'0' <= 9;

    private static bool IsHexDigit(byte b) => IsDigit(b) || (b | 0x20) - (uint)'a' <= 5;
}
