namespace ActorRing.Model.Tokenization;

/// <summary>What happens to the space SentencePiece puts before the text when it is decoded.</summary>
internal enum LeadingSpace
{
    /// <summary>Every space is text (byte-level BPE adds no dummy prefix).</summary>
    Keep,

    /// <summary>The token right after BOS loses its leading space, as llama2.c prints it.</summary>
    DropAfterBos,

    /// <summary>The first text of the sequence loses one leading space, as Hugging Face's Strip/Metaspace decoders do.</summary>
    DropAtStart,
}

/// <summary>
/// The bytes each id contributes to decoded text. Every tokenizer here reduces decoding to this table so that
/// <see cref="ITextTokenizer.Decode"/> and <see cref="IncrementalDecoder"/> share one code path and cannot drift.
/// </summary>
internal sealed class TokenByteTable
{
    private readonly byte[][] _bytes;
    private readonly bool[] _special;
    private readonly bool[] _startsWithSpace;
    private readonly LeadingSpace _leadingSpace;
    private readonly string[] _spelling;

    /// <param name="bytes">Per id: the UTF-8 (or raw, for byte tokens) bytes it stands for.</param>
    /// <param name="special">Per id: control tokens that render as nothing.</param>
    /// <param name="isByteToken">Per id: byte-fallback tokens (&lt;0xNN&gt;), which never get the leading-space rule.</param>
    /// <param name="spelling">Per id: the vocabulary's own spelling, for diagnostics.</param>
    /// <param name="bosId">BOS id or -1.</param>
    /// <param name="leadingSpace">
    /// SentencePiece tokenizers add a dummy "▁" before the text, so the first piece carries a space that is not
    /// part of the text. llama2.c removes it from the token that follows BOS (never from a byte token); Hugging
    /// Face's decoders remove it from the start of the decoded text; byte-level BPE (Llama 3, Qwen2) adds no such
    /// prefix and must keep every space.
    /// </param>
    public TokenByteTable(byte[][] bytes, bool[] special, bool[] isByteToken, string[] spelling, int bosId,
        LeadingSpace leadingSpace)
    {
        _bytes = bytes;
        _special = special;
        _spelling = spelling;
        _leadingSpace = leadingSpace;
        BosId = bosId;
        _startsWithSpace = new bool[bytes.Length];
        for (var i = 0; i < bytes.Length; i++)
        {
            _startsWithSpace[i] = !special[i] && bytes[i].Length > 0 && bytes[i][0] == (byte)' '
                && (leadingSpace == LeadingSpace.DropAtStart || !isByteToken[i]);
        }
    }

    public int Count => _bytes.Length;

    public int BosId { get; }

    public bool IsSpecial(int id) => _special[Check(id)];

    public string Spelling(int id) => _spelling[Check(id)];

    /// <summary>
    /// The bytes <paramref name="id"/> adds to the text when it follows <paramref name="previousId"/> (-1 at start);
    /// <paramref name="atTextStart"/> says no earlier token has produced any text.
    /// </summary>
    public ReadOnlySpan<byte> BytesFor(int id, int previousId, bool atTextStart)
    {
        Check(id);
        if (_special[id])
        {
            return ReadOnlySpan<byte>.Empty;
        }

        var b = _bytes[id];
        var strip = _startsWithSpace[id] && _leadingSpace switch
        {
            LeadingSpace.DropAfterBos => previousId == BosId && BosId >= 0,
            LeadingSpace.DropAtStart => atTextStart,
            _ => false,
        };
        return strip ? b.AsSpan(1) : b;
    }

    public string Decode(IReadOnlyList<int> ids)
    {
        var decoder = new IncrementalDecoder(this);
        var sb = new System.Text.StringBuilder();
        foreach (var id in ids)
        {
            sb.Append(decoder.Append(id));
        }

        sb.Append(decoder.Flush());
        return sb.ToString();
    }

    private int Check(int id)
    {
        if ((uint)id >= (uint)_bytes.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary (0..{_bytes.Length - 1})");
        }

        return id;
    }
}
