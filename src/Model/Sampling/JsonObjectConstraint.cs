namespace ActorRing.Model.Sampling;

/// <summary>
/// OpenAI's <c>response_format: {"type": "json_object"}</c>: the completion's text is a JSON object and nothing
/// else. A token is allowed while its bytes continue a JSON object (<see cref="JsonPrefix"/>); once the object is
/// closed only a stop token is, so the completion ends right there (as vLLM's guided decoding does). Special tokens
/// render no text and are allowed only as that stop. A completion cut short by max_tokens or a stop string is
/// still a cut-off object, as OpenAI's is.
/// </summary>
public sealed class JsonObjectConstraint : ITokenConstraint
{
    private readonly byte[]?[] _tokenBytes;
    private readonly HashSet<int> _stopIds;
    private readonly bool[] _plainStringText;
    private readonly short[] _firstByte, _secondByte; // per token, -1 where it has none: flat, so a mask streams them
    private readonly bool[] _firstByteGoesOn = new bool[256]; // from the current state, by the token's first byte
    private readonly bool[] _afterSpaceGoesOn = new bool[256]; // from the current state and a space, by the next byte
    private JsonPrefix _prefix = JsonPrefix.Empty;

    /// <param name="tokenBytes">Per token id, the bytes it adds to the text, or null for a special token.</param>
    /// <param name="stopIds">The ids that end the completion (EOS and the request's stop ids).</param>
    public JsonObjectConstraint(IReadOnlyList<byte[]?> tokenBytes, IEnumerable<int> stopIds)
    {
        _tokenBytes = [.. tokenBytes]; // an array: through IReadOnlyList every lookup is an interface call
        _stopIds = [.. stopIds];
        // Most of a JSON answer is string text, where a token without a quote, a backslash or a control byte goes on
        // whatever it holds. A full mask runs on rank 0's step loop and holds up every sequence's next step, so most
        // tokens are decided by these tables without reading their bytes. Measured with a 152k vocabulary of random
        // 1-8 byte tokens (half of them starting with a space): 0.4 ms a mask inside a string, 2-4 ms after a number
        // or a bracket (4-5 ms before the tables).
        _plainStringText = [.. tokenBytes.Select(b => b is { Length: > 0 } && JsonPrefix.IsPlainStringText(b))];
        _firstByte = [.. _tokenBytes.Select(b => b is { Length: > 0 } ? (short)b[0] : (short)-1)];
        _secondByte = [.. _tokenBytes.Select(b => b is { Length: > 1 } ? (short)b[1] : (short)-1)];
        UpdateFirstBytes();
    }

    /// <summary>The text so far is a whole JSON object.</summary>
    public bool IsComplete => _prefix.IsComplete;

    public bool Allows(int tokenId)
    {
        if (_prefix.IsComplete) return _stopIds.Contains(tokenId);
        if ((uint)tokenId >= (uint)_tokenBytes.Length) return false;
        int first = _firstByte[tokenId], second = _secondByte[tokenId];
        if (first < 0) return false; // a special token, or one with no text
        if (_plainStringText[tokenId] && _prefix.InStringText) return true;
        if (!_firstByteGoesOn[first]) return false;
        if (first == ' ' && second >= 0 && !_afterSpaceGoesOn[second]) return false;
        var next = _prefix;
        return next.TryRead(_tokenBytes[tokenId]);
    }

    public bool RemoveDisallowed(Span<float> scores)
    {
        bool left = false;
        if (_prefix.InStringText)
        {
            // One table lookup per token for the common case; the others are read.
            for (int id = 0; id < scores.Length; id++)
            {
                if (float.IsNegativeInfinity(scores[id])) continue;
                if ((uint)id < (uint)_plainStringText.Length && _plainStringText[id] || Allows(id)) left = true; // plain text needs no more
                else scores[id] = float.NegativeInfinity;
            }
            return left;
        }
        for (int id = 0; id < scores.Length; id++)
        {
            if (float.IsNegativeInfinity(scores[id])) continue;
            if (Allows(id)) left = true;
            else scores[id] = float.NegativeInfinity;
        }
        return left;
    }

    public void Accept(int tokenId)
    {
        if (_prefix.IsComplete && _stopIds.Contains(tokenId)) return;
        if (!Allows(tokenId)) throw new InvalidOperationException($"token {tokenId} does not continue the JSON object (response_format json_object)");
        _prefix.TryRead(_tokenBytes[tokenId]!);
        UpdateFirstBytes();
    }

    /// <summary>
    /// Which first bytes, and which bytes after a first space, can go on from the current state. Outside strings few
    /// can, so most tokens (many of which start with a space) are refused by a table lookup without reading them.
    /// </summary>
    private void UpdateFirstBytes()
    {
        Span<byte> bytes = stackalloc byte[2];
        bytes[0] = (byte)' ';
        for (int b = 0; b < 256; b++)
        {
            bytes[1] = (byte)b;
            var next = _prefix;
            _firstByteGoesOn[b] = next.TryRead(bytes[1..]);
            next = _prefix;
            _afterSpaceGoesOn[b] = next.TryRead(bytes);
        }
    }
}
