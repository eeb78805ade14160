using System.Text;

namespace ActorRing.Model.Tokenization;

/// <summary>
/// Streams decoded text one token at a time. A character can span several byte-fallback tokens
/// (e.g. "🙂" is &lt;0xF0&gt;&lt;0x9F&gt;&lt;0x99&gt;&lt;0x82&gt;), so incomplete UTF-8 is held back until the
/// character completes; a client never sees a replacement character that the full decode would not contain.
/// Not thread-safe: one decoder per sequence.
/// </summary>
public sealed class IncrementalDecoder
{
    private readonly TokenByteTable _table;

    // A non-throwing UTF-8 decoder keeps a partial sequence across calls when flush is false, which is exactly
    // the buffering needed; invalid bytes become U+FFFD, as they would in a whole-string decode.
    private readonly Decoder _utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[32];
    private int _previousId = -1;
    private bool _atTextStart = true;

    internal IncrementalDecoder(TokenByteTable table)
    {
        _table = table;
    }

    /// <summary>Number of tokens appended so far.</summary>
    public int TokenCount { get; private set; }

    /// <summary>Adds one token and returns only the text it completes (possibly empty).</summary>
    public string Append(int id)
    {
        var bytes = _table.BytesFor(id, _previousId, _atTextStart);
        _previousId = id;
        _atTextStart &= _table.IsSpecial(id);
        TokenCount++;
        return Convert(bytes, flush: false);
    }

    /// <summary>
    /// Ends the sequence: returns whatever is still buffered (an incomplete character becomes U+FFFD) and
    /// resets the UTF-8 state. The BOS/leading-space state is kept.
    /// </summary>
    public string Flush() => Convert(ReadOnlySpan<byte>.Empty, flush: true);

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        // Worst case: every pending byte (at most 3) plus every new byte becomes one char.
        var needed = bytes.Length + 4;
        if (_chars.Length < needed)
        {
            _chars = new char[Math.Max(needed, _chars.Length * 2)];
        }

        var n = _utf8.GetChars(bytes, _chars, flush);
        return n == 0 ? string.Empty : new string(_chars, 0, n);
    }
}
