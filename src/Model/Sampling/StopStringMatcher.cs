namespace ActorRing.Model.Sampling;

/// <summary>Result of feeding text to a <see cref="StopStringMatcher"/>.</summary>
/// <param name="Text">Text that is now safe to emit (never contains a stop string).</param>
/// <param name="Stopped">A stop string was completed; <paramref name="Text"/> ends right before it.</param>
/// <param name="StopString">The stop string that matched, when <paramref name="Stopped"/>.</param>
public readonly record struct StopStringMatch(string Text, bool Stopped, string? StopString);

/// <summary>
/// Finds stop strings in streamed text even when they span several tokens. Text that could still be the start
/// of a stop string is held back until it either completes one (then it is dropped) or cannot anymore.
/// </summary>
public sealed class StopStringMatcher
{
    private readonly string[] _stops;
    private string _held = "";

    public StopStringMatcher(IReadOnlyList<string>? stopStrings)
    {
        _stops = stopStrings is null ? [] : [.. stopStrings];
        foreach (var s in _stops)
        {
            if (string.IsNullOrEmpty(s))
            {
                throw new ArgumentException("stop strings must be non-empty", nameof(stopStrings));
            }
        }
    }

    public bool Stopped { get; private set; }

    /// <summary>Text currently held back as a possible stop-string prefix.</summary>
    public string HeldBack => _held;

    /// <summary>Feeds streamed text. While <paramref name="armed"/> is false (vLLM's min_tokens not yet reached) no
    /// stop string ends the text, but a possible stop-string prefix at its end is still held back, so a stop
    /// string that is completed once armed is found even when it began earlier.</summary>
    public StopStringMatch Push(string text, bool armed = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (Stopped)
        {
            throw new InvalidOperationException("a stop string already matched; no more text can be pushed");
        }

        if (_stops.Length == 0)
        {
            return new StopStringMatch(text, false, null);
        }

        var buffer = _held + text;

        // The earliest match wins: text after its start is never emitted.
        var matchAt = -1;
        string? matched = null;
        foreach (var s in _stops)
        {
            var at = buffer.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (matchAt < 0 || at < matchAt))
            {
                matchAt = at;
                matched = s;
            }
        }

        if (matched is not null && armed)
        {
            Stopped = true;
            _held = "";
            return new StopStringMatch(buffer[..matchAt], true, matched);
        }

        // Hold back the longest suffix that is a proper prefix of some stop string; any later match must start
        // inside it, because everything before it has been ruled out.
        var hold = 0;
        foreach (var s in _stops)
        {
            for (var len = Math.Min(s.Length - 1, buffer.Length); len > hold; len--)
            {
                if (string.CompareOrdinal(buffer, buffer.Length - len, s, 0, len) == 0)
                {
                    hold = len;
                    break;
                }
            }
        }

        _held = buffer[(buffer.Length - hold)..];
        return new StopStringMatch(buffer[..(buffer.Length - hold)], false, null);
    }

    /// <summary>Generation ended for another reason: the held-back text was not a stop string after all.</summary>
    public string Flush()
    {
        var rest = _held;
        _held = "";
        return rest;
    }
}
