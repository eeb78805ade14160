using System.Runtime.CompilerServices;
using Kind = ActorRing.Model.Sampling.JsonSchema.Kind;

namespace ActorRing.Model.Sampling;

/// <summary>
/// Where an answer that must follow a <see cref="JsonSchema"/> stands after some UTF-8 bytes: a pushdown
/// recognizer for RFC 8259 with one frame per open value (an object, an array, a string, a number or a literal).
/// Keys and enum values are matched against the names still possible, so a key is always one of the object's
/// properties, never one it already has, and an object closes only once its required properties are all there
/// (<see cref="JsonSchema.AnyObject"/>'s objects take any key). A discriminated union is read as an object whose only
/// key is its discriminator until that key's value turns the frame into the branch it names. A value type (the frames are inline), so
/// <see cref="JsonConstraint"/> tries every vocabulary entry on a copy and the original stays as it was.
/// <para>
/// Two limits keep a poorly trained model from wandering where the grammar alone would let it. Whitespace between
/// tokens is nothing, one space, or a line break and at most <see cref="MaxIndent"/> spaces or tabs of indentation
/// (the rule of llama.cpp's JSON grammar): with any whitespace allowed, the bundled story model spent most of its
/// max_tokens on runs of spaces and line breaks. And values nest at most <see cref="MaxDepth"/> deep, the value being
/// written included (OpenAI's structured outputs allow 10 levels). Bytes of 0x80 and above are accepted inside
/// strings as they come: a multi-byte character may span tokens.
/// </para>
/// </summary>
public struct JsonSchemaPrefix
{
    /// <summary>The deepest nesting of values (objects, arrays and the scalar being written) allowed.</summary>
    public const int MaxDepth = 16;

    /// <summary>The most spaces or tabs allowed after a line break between tokens.</summary>
    public const int MaxIndent = 20;

    private enum Mode : byte
    {
        KeyOrClose, Key, InKey, AnyKey, Colon, PropertyValue, AfterProperty, // an object (AnyKey: its key's string frame is on top)
        ItemOrClose, Item, AfterItem,                                   // an array
        Text, Escape, Unicode,                                          // a string of any text
        Formatted,                                                      // a string of a format (Pos: where in it)
        EnumText,                                                       // a string among the enum values
        Minus, Zero, Integer, Point, Fraction, Exponent, ExponentSign, ExponentDigits, // a number
        Literal,                                                        // true, false or null
    }

    private struct Frame
    {
        public short Node;
        public Mode Mode;
        public byte Sub;        // Literal: which; Unicode: hex digits read; a bounded number: 1 if negative
        public ushort Pos;      // InKey, EnumText: bytes matched; Literal: bytes read; a bounded number: fraction digits
        public int Count;       // object: the property being written; array: the items written; string: its characters;
                                // a bounded number: its integer digits
        public ulong Used;      // object: the properties written; a bounded number: its integer part
        public ulong Candidates; // InKey, EnumText: the names still possible; a bounded number: its fraction digits' value
    }

    [InlineArray(MaxDepth)]
    private struct Frames
    {
        private Frame _first;
    }

    private static readonly byte[][] Literals = ["true"u8.ToArray(), "false"u8.ToArray(), "null"u8.ToArray()];

    private readonly JsonSchema _schema;
    private Frames _frames;
    private byte _depth;
    private bool _complete;
    private byte _whitespace;
    private bool _lineBreak;
    private byte _enumChosen; // the value an enum string just closed with: a union's discriminator picks its branch by it

    internal JsonSchemaPrefix(JsonSchema schema) => _schema = schema;

    /// <summary>The bytes read so far are a whole answer: only a stop token may follow.</summary>
    public readonly bool IsComplete => _complete;

    /// <summary>Inside a string of any text and any length, outside an escape: bytes that are
    /// <see cref="JsonSchema.IsPlainStringText"/> go on.</summary>
    public readonly bool InStringText => _depth > 0 && _frames[_depth - 1].Mode == Mode.Text
        && _schema.Nodes[_frames[_depth - 1].Node] is { MinLength: 0, MaxLength: int.MaxValue };

    /// <summary>Reads <paramref name="bytes"/>; false (and the state undefined) when they cannot go on.</summary>
    public bool TryRead(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            if (!TryRead(b)) return false;
        }
        return true;
    }

    internal bool TryRead(byte b)
    {
        if (_complete) return false;
        if (_depth == 0) return Between(b) ?? StartValue(_schema.Root, b);
        ref var f = ref _frames[_depth - 1];
        var node = _schema.Nodes[f.Node];
        switch (f.Mode)
        {
            case Mode.Text:
                if (b == (byte)'"') return f.Count >= node.MinLength && EndValue();
                if (b < 0x20) return false;
                if ((b & 0xC0) != 0x80) // a character starts (an escape is one): not past maxLength
                {
                    if (f.Count == node.MaxLength) return false;
                    f.Count++;
                }
                if (b == (byte)'\\') f.Mode = Mode.Escape;
                return true;
            case Mode.Formatted:
                if (b == (byte)'"') return FormatEnds(node.Format, f.Pos) && f.Count >= node.MinLength && EndValue();
                if (f.Count == node.MaxLength) return false;
                int next = FormatStep(node.Format, f.Pos, f.Sub, b);
                if (next < 0) return false;
                (f.Pos, f.Sub, f.Count) = ((ushort)next, b, f.Count + 1);
                return true;
            case Mode.Escape:
                if (b == (byte)'u')
                {
                    f.Mode = Mode.Unicode;
                    f.Sub = 0;
                    return true;
                }
                f.Mode = Mode.Text;
                return b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t';
            case Mode.Unicode:
                if (!IsHexDigit(b)) return false;
                if (++f.Sub == 4) f.Mode = Mode.Text;
                return true;
            case Mode.EnumText or Mode.InKey:
                if (b == (byte)'"')
                {
                    int whole = WholeName(node.Names, f.Candidates, f.Pos);
                    if (whole < 0) return false;
                    if (f.Mode == Mode.EnumText)
                    {
                        _enumChosen = (byte)whole;
                        return EndValue();
                    }
                    f.Count = whole;
                    f.Mode = Mode.Colon;
                    return true;
                }
                f.Candidates = Narrow(node.Names, f.Candidates, f.Pos++, b);
                return f.Candidates != 0;
            case Mode.Literal:
                var literal = Literals[f.Sub];
                if (b != literal[f.Pos]) return false;
                return ++f.Pos < literal.Length || EndValue();
            case Mode.Minus:
                if (!IsDigit(b)) return false;
                f.Mode = b == (byte)'0' ? Mode.Zero : Mode.Integer;
                return !node.Bounded || IntegerDigit(ref f, node, b);
            case Mode.Zero or Mode.Integer:
                if (IsDigit(b) && f.Mode == Mode.Integer) return !node.Bounded || IntegerDigit(ref f, node, b);
                if (node.Kind == Kind.Number && b == (byte)'.')
                {
                    f.Mode = Mode.Point;
                    return !node.Bounded || Reachable(f, node);
                }
                // A bounded number has no exponent: its digits say where it stands.
                if (node.Kind == Kind.Number && !node.Bounded && b is (byte)'e' or (byte)'E') { f.Mode = Mode.Exponent; return true; }
                return EndNumber(b);
            case Mode.Point:
                if (!IsDigit(b)) return false;
                f.Mode = Mode.Fraction;
                return !node.Bounded || FractionDigit(ref f, node, b);
            case Mode.Fraction:
                if (IsDigit(b)) return !node.Bounded || FractionDigit(ref f, node, b);
                if (!node.Bounded && b is (byte)'e' or (byte)'E') { f.Mode = Mode.Exponent; return true; }
                return EndNumber(b);
            case Mode.Exponent:
                if (b is (byte)'+' or (byte)'-') { f.Mode = Mode.ExponentSign; return true; }
                if (!IsDigit(b)) return false;
                f.Mode = Mode.ExponentDigits;
                return true;
            case Mode.ExponentSign:
                if (!IsDigit(b)) return false;
                f.Mode = Mode.ExponentDigits;
                return true;
            case Mode.ExponentDigits:
                return IsDigit(b) || EndNumber(b);
        }

        if (Between(b) is bool whitespace) return whitespace;
        ulong all = node.Names.Length == JsonSchema.MaxNames ? ulong.MaxValue : (1UL << node.Names.Length) - 1;
        switch (f.Mode)
        {
            case Mode.KeyOrClose:
                if (b == (byte)'}') return (node.Required & ~f.Used) == 0 && EndValue();
                goto case Mode.Key;
            case Mode.Key:
                if (node.AnyKeys) return b == (byte)'"' && OpenAnyKey(ref f);
                if (b != (byte)'"' || (all & ~f.Used) == 0) return false;
                f.Mode = Mode.InKey;
                f.Candidates = all & ~f.Used;
                f.Pos = 0;
                return true;
            case Mode.Colon:
                if (b != (byte)':') return false;
                f.Mode = Mode.PropertyValue;
                return true;
            case Mode.PropertyValue:
                return StartValue(node.AnyKeys ? node.Children[0] : node.Children[f.Count], b);
            case Mode.AfterProperty:
                if (b == (byte)',')
                {
                    f.Mode = Mode.Key;
                    return node.AnyKeys || (all & ~f.Used) != 0;
                }
                return b == (byte)'}' && (node.Required & ~f.Used) == 0 && EndValue();
            case Mode.ItemOrClose:
                if (b == (byte)']') return node.MinItems == 0 && EndValue();
                return node.MaxItems > 0 && StartValue(node.Children[0], b);
            case Mode.Item:
                return StartValue(node.Children[0], b);
            case Mode.AfterItem:
                if (b == (byte)',')
                {
                    f.Mode = Mode.Item;
                    return f.Count < node.MaxItems;
                }
                return b == (byte)']' && f.Count >= node.MinItems && EndValue();
            default:
                return false;
        }
    }

    /// <summary>
    /// Whitespace between tokens (nothing, one space, or a line break and at most <see cref="MaxIndent"/> spaces or
    /// tabs): whether it may go on, or null for any other byte.
    /// </summary>
    private bool? Between(byte b)
    {
        if (b is not ((byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r'))
        {
            _whitespace = 0;
            return null;
        }
        if (_whitespace == 0)
        {
            _lineBreak = b == (byte)'\n';
            _whitespace = 1;
            return b is (byte)' ' or (byte)'\n';
        }
        return _lineBreak && (b is (byte)' ' or (byte)'\t') && _whitespace++ <= MaxIndent; // _whitespace - 1 indentation bytes so far
    }

    /// <summary>Opens a value of schema node <paramref name="id"/> with its first byte (an anyOf takes the branch that can start so).</summary>
    private bool StartValue(int id, byte b)
    {
        var node = _schema.Nodes[id];
        while (node.Kind == Kind.AnyOf)
        {
            int branch = -1;
            foreach (int c in node.Children)
            {
                if (_schema.Nodes[c].StartBytes[b]) { branch = c; break; } // branches start apart (JsonSchema checks)
            }
            if (branch < 0) return false;
            id = branch;
            node = _schema.Nodes[id];
        }
        if (_depth == MaxDepth || !node.StartBytes[b]) return false;
        ref var f = ref _frames[_depth++];
        f = new Frame { Node = (short)id };
        switch (node.Kind)
        {
            case Kind.Object or Kind.Union: f.Mode = Mode.KeyOrClose; break;
            case Kind.Array: f.Mode = Mode.ItemOrClose; break;
            case Kind.String:
                f.Mode = node.Names.Length > 0 ? Mode.EnumText : node.Format != JsonSchema.StringFormat.None ? Mode.Formatted : Mode.Text;
                f.Candidates = node.Names.Length == JsonSchema.MaxNames ? ulong.MaxValue : (1UL << node.Names.Length) - 1;
                break;
            case Kind.Number or Kind.Integer:
                f.Mode = b == (byte)'-' ? Mode.Minus : b == (byte)'0' ? Mode.Zero : Mode.Integer;
                if (!node.Bounded) break;
                if (b == (byte)'-')
                {
                    f.Sub = 1;
                    return Reachable(f, node);
                }
                return IntegerDigit(ref f, node, b);
            default:
                f.Mode = Mode.Literal;
                f.Sub = b switch { (byte)'t' => 0, (byte)'f' => 1, _ => 2 };
                f.Pos = 1;
                break;
        }
        return true;
    }

    /// <summary>The value on top ended: its container goes on, or the answer is whole.</summary>
    private bool EndValue()
    {
        _depth--;
        if (_depth == 0)
        {
            _complete = true;
            return true;
        }
        ref var parent = ref _frames[_depth - 1];
        if (parent.Mode == Mode.AnyKey)
        {
            parent.Mode = Mode.Colon;
            return true;
        }
        if (parent.Mode == Mode.PropertyValue)
        {
            var node = _schema.Nodes[parent.Node];
            if (node.Kind == Kind.Union)
            {
                // The discriminator's value picks the branch: from here on the object is that branch, its key written.
                parent.Node = (short)node.Branches[_enumChosen];
                parent.Count = node.BranchKey[_enumChosen];
            }
            parent.Used |= 1UL << parent.Count;
            parent.Mode = Mode.AfterProperty;
        }
        else
        {
            parent.Count++;
            parent.Mode = Mode.AfterItem;
        }
        return true;
    }

    /// <summary>A key of an object that takes any: a string of any text, in a frame of its own on top.</summary>
    private bool OpenAnyKey(ref Frame obj)
    {
        if (_depth == MaxDepth) return false;
        obj.Mode = Mode.AnyKey;
        _frames[_depth++] = new Frame { Node = obj.Node, Mode = Mode.Text }; // text needs nothing of its node
        return true;
    }

    /// <summary>A number ends at the first byte that cannot continue it, which its container then reads; a bounded
    /// one only at a value within its bounds.</summary>
    private bool EndNumber(byte b)
    {
        ref var f = ref _frames[_depth - 1];
        var node = _schema.Nodes[f.Node];
        if (node.Bounded)
        {
            double value = Value(f);
            if (!node.Meets(value, value)) return false;
        }
        return EndValue() && TryRead(b);
    }

    /// <summary>
    /// The fixed part of each format, a character class per position: d a digit, x a hex digit, M and m a month's
    /// digits (01-12), D and e a day's (01-31), H and h an hour's (00-23), N a minute's or second's first digit (0-5);
    /// anything else is itself. A time then has its tail: an optional fraction of a second and a zone, Z or ±hh:mm.
    /// </summary>
    private static string FormatPattern(JsonSchema.StringFormat format) => format switch
    {
        JsonSchema.StringFormat.Date => "dddd-Mm-De",
        JsonSchema.StringFormat.Time => "Hh:Nd:Nd",
        JsonSchema.StringFormat.DateTime => "dddd-Mm-DeTHh:Nd:Nd",
        _ => "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
    };

    private static bool HasZone(JsonSchema.StringFormat format) => format is JsonSchema.StringFormat.Time or JsonSchema.StringFormat.DateTime;

    /// <summary>States of a time's tail, counted past its fixed part: after the seconds, after the point, in the fraction
    /// (one state per digit, at most <see cref="MaxSecondDigits"/>: nanoseconds; unbounded, the story model wrote zeros
    /// until max_tokens), then the five characters of an offset; <see cref="FormatDone"/> once the zone is written.</summary>
    private const int MaxSecondDigits = 9, AfterSeconds = 0, AfterPoint = 1, InFraction = 2, InOffset = InFraction + MaxSecondDigits, FormatDone = 1000;

    private static bool FormatEnds(JsonSchema.StringFormat format, int state) =>
        format == JsonSchema.StringFormat.Email ? state == InLaterLabel
        : HasZone(format) ? state == FormatDone : state == FormatPattern(format).Length;

    /// <summary>An email address's states: in its local part (none yet, some), then in its domain's first label (none
    /// yet, some), after a dot, and in a later label, where it may end.</summary>
    private const int LocalStart = 0, InLocal = 1, DomainStart = 2, InFirstLabel = 3, AfterDot = 4, InLaterLabel = 5;

    private static int EmailStep(int state, byte b)
    {
        bool alnum = IsDigit(b) || IsLetter(b);
        switch (state)
        {
            case LocalStart or InLocal:
                if (alnum || b is (byte)'.' or (byte)'_' or (byte)'%' or (byte)'+' or (byte)'-') return InLocal;
                return state == InLocal && b == (byte)'@' ? DomainStart : -1;
            case DomainStart or AfterDot:
                return alnum ? (state == DomainStart ? InFirstLabel : InLaterLabel) : -1;
            default: // in a label
                if (alnum || b == (byte)'-') return state;
                return b == (byte)'.' ? AfterDot : -1;
        }
    }

    /// <summary>The state after byte <paramref name="b"/> (the previous byte <paramref name="previous"/>), or -1.</summary>
    private static int FormatStep(JsonSchema.StringFormat format, int state, byte previous, byte b)
    {
        if (format == JsonSchema.StringFormat.Email) return EmailStep(state, b);
        string pattern = FormatPattern(format);
        if (state < pattern.Length) return FixedStep(pattern[state], previous, b) ? state + 1 : -1;
        if (!HasZone(format) || state == FormatDone) return -1;
        int tail = state - pattern.Length;
        switch (tail)
        {
            case AfterSeconds or (>= InFraction and < InOffset):
                if (tail >= InFraction && IsDigit(b)) return tail + 1 < InOffset ? state + 1 : -1;
                if (b == (byte)'.' && tail == AfterSeconds) return pattern.Length + AfterPoint;
                if (b is (byte)'Z' or (byte)'z') return FormatDone;
                return b is (byte)'+' or (byte)'-' ? pattern.Length + InOffset : -1;
            case AfterPoint:
                return IsDigit(b) ? pattern.Length + InFraction : -1;
            default: // the offset hh:mm
                const string Offset = "Hh:Nd";
                int at = tail - InOffset;
                if (!FixedStep(Offset[at], previous, b)) return -1;
                return at == Offset.Length - 1 ? FormatDone : state + 1;
        }
    }

    private static bool FixedStep(char cls, byte previous, byte b) => cls switch
    {
        'd' => IsDigit(b),
        'x' => IsHexDigit(b),
        'M' => b is (byte)'0' or (byte)'1',
        'm' => previous == (byte)'0' ? b is >= (byte)'1' and <= (byte)'9' : b is >= (byte)'0' and <= (byte)'2',
        'D' => b is >= (byte)'0' and <= (byte)'3',
        'e' => previous switch { (byte)'0' => b is >= (byte)'1' and <= (byte)'9', (byte)'3' => b is (byte)'0' or (byte)'1', _ => IsDigit(b) },
        'H' => b is >= (byte)'0' and <= (byte)'2',
        'h' => previous == (byte)'2' ? b is >= (byte)'0' and <= (byte)'3' : IsDigit(b),
        'N' => b is >= (byte)'0' and <= (byte)'5',
        _ => b == (byte)cls,
    };

    /// <summary>The most digits a bounded number's integer part and fraction may have: its value is kept exactly.</summary>
    private const int MaxIntegerDigits = 18, MaxFractionDigits = 15;

    private static bool IntegerDigit(ref Frame f, JsonSchema.Node node, byte digit)
    {
        if (f.Count == MaxIntegerDigits) return false;
        f.Used = f.Used * 10 + (ulong)(digit - '0');
        f.Count++;
        return Reachable(f, node);
    }

    private static bool FractionDigit(ref Frame f, JsonSchema.Node node, byte digit)
    {
        if (f.Pos == MaxFractionDigits) return false;
        f.Candidates = f.Candidates * 10 + (ulong)(digit - '0');
        f.Pos++;
        return Reachable(f, node);
    }

    /// <summary>A bounded number's value as written so far.</summary>
    private static double Value(in Frame f)
    {
        double magnitude = f.Used + f.Candidates / Math.Pow(10, f.Pos);
        return f.Sub == 1 ? -magnitude : magnitude;
    }

    /// <summary>
    /// Whether some number that starts as the bounded number written so far lies within its bounds: the values it can
    /// still become, range by range (more integer digits, each count its own range; or a fraction), meet the bounds.
    /// Each byte is allowed only while that holds, so a bounded number never comes to a dead end.
    /// </summary>
    private static bool Reachable(in Frame f, JsonSchema.Node node)
    {
        bool negative = f.Sub == 1, integer = node.Kind == Kind.Integer;
        bool Meets(double low, double high) => negative ? node.Meets(-high, -low) : node.Meets(low, high);
        double m = f.Used;
        switch (f.Mode)
        {
            case Mode.Minus:
                return node.Meets(double.NegativeInfinity, 0);
            case Mode.Zero or Mode.Point:
                return Meets(m, integer ? m : m + 1);
            case Mode.Fraction:
                double step = Math.Pow(10, -f.Pos), low = m + f.Candidates * step;
                return Meets(low, low + step);
            default: // Mode.Integer: the value as it is, then each count of further digits
                if (Meets(m, integer ? m : m + 1)) return true;
                double scale = 1;
                for (int more = 1; f.Count + more <= MaxIntegerDigits; more++)
                {
                    scale *= 10;
                    if (Meets(m * scale, integer ? m * scale + scale - 1 : (m + 1) * scale)) return true;
                }
                return false;
        }
    }

    /// <summary>The names among <paramref name="candidates"/> whose byte <paramref name="pos"/> is <paramref name="b"/>.</summary>
    private static ulong Narrow(byte[][] names, ulong candidates, int pos, byte b)
    {
        ulong left = 0;
        for (ulong rest = candidates; rest != 0; rest &= rest - 1)
        {
            int i = System.Numerics.BitOperations.TrailingZeroCount(rest);
            if (pos < names[i].Length && names[i][pos] == b) left |= 1UL << i;
        }
        return left;
    }

    /// <summary>The candidate that is exactly <paramref name="length"/> bytes long, or -1.</summary>
    private static int WholeName(byte[][] names, ulong candidates, int length)
    {
        for (ulong rest = candidates; rest != 0; rest &= rest - 1)
        {
            int i = System.Numerics.BitOperations.TrailingZeroCount(rest);
            if (names[i].Length == length) return i;
        }
        return -1;
    }

    private static bool IsDigit(byte b) => b - (uint)'0' <= 9;

    // Unsigned on purpose: a byte below the range wraps to a large number (an int minus a uint would be a long, and
    // negative: '!' and '@' passed for hex digits until that was found).
    private static bool IsHexDigit(byte b) => IsDigit(b) || (uint)((b | 0x20) - 'a') <= 5;

    private static bool IsLetter(byte b) => (uint)((b | 0x20) - 'a') <= 25;
}
