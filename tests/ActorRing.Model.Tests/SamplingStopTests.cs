using ActorRing.Model.Sampling;
using ActorRing.Model.Tokenization;

namespace ActorRing.Model.Tests;

public sealed class SamplingStopTests
{
    private static readonly ITextTokenizer Stories = Llama2cTokenizer.Load(TokenizerTestFiles.Llama2cTokenizer);

    private static (string Text, List<StopCheck> Steps) Run(StopConditions stop, IEnumerable<int> ids)
    {
        var steps = new List<StopCheck>();
        foreach (var id in ids)
        {
            var step = stop.Append(id);
            steps.Add(step);
            if (step.Stopped)
            {
                break;
            }
        }

        return (string.Concat(steps.Select(s => s.Text)), steps);
    }

    [Fact]
    public void Stop_string_spanning_tokens_is_cut_and_not_emitted()
    {
        var m = new StopStringMatcher(["\nUser:"]);
        Assert.Equal(new StopStringMatch("Hello", false, null), m.Push("Hello"));

        // "\nUs" could be the start of the stop string: hold it.
        Assert.Equal(new StopStringMatch("", false, null), m.Push("\nUs"));
        Assert.Equal("\nUs", m.HeldBack);
        Assert.Equal(new StopStringMatch("", false, null), m.Push("er"));

        // Completing it drops the stop string and everything after it.
        Assert.Equal(new StopStringMatch("", true, "\nUser:"), m.Push(": hi"));
        Assert.Equal("", m.HeldBack);
    }

    [Fact]
    public void Held_text_is_released_when_it_stops_matching()
    {
        var m = new StopStringMatcher(["abc"]);
        Assert.Equal("x", m.Push("xa").Text);
        Assert.Equal("", m.Push("b").Text);
        Assert.Equal(new StopStringMatch("abd", false, null), m.Push("d"));
        Assert.Equal("", m.HeldBack);
    }

    [Fact]
    public void Overlapping_prefixes_and_earliest_match()
    {
        // "aaab" with stop "aab": the first "a" is text, the rest is the stop string.
        var m = new StopStringMatcher(["aab"]);
        var emitted = string.Concat(new[] { "a", "a", "a" }.Select(s => m.Push(s).Text));
        var last = m.Push("b");
        Assert.True(last.Stopped);
        Assert.Equal("a", emitted + last.Text);

        // Two stop strings in one chunk: the one that starts first wins.
        var two = new StopStringMatcher(["END", "stop"]);
        Assert.Equal(new StopStringMatch("x ", true, "stop"), two.Push("x stop END"));
        Assert.Throws<InvalidOperationException>(() => two.Push("more"));

        // Without stop strings everything passes straight through.
        Assert.Equal(new StopStringMatch("abc", false, null), new StopStringMatcher(null).Push("abc"));
    }

    [Fact]
    public void Stop_string_across_real_tokens()
    {
        // " upon", " a", " time": the stop string "n a t" spans three tokens.
        var prompt = new[] { 1 };
        var stop = StopConditions.For(Stories, new SamplingOptions(StopStrings: ["n a t"]), prompt);
        var (text, steps) = Run(stop, [403, 407, 261, 378, 432]);
        Assert.Equal("Once upo", text);
        Assert.Equal(4, steps.Count);
        Assert.Equal(new StopCheck("", true, "stop"), steps[^1]);
        Assert.Equal("n a t", stop.MatchedStopString);
        Assert.Equal(FinishReasons.Stop, stop.FinishReason);
        Assert.Throws<InvalidOperationException>(() => stop.Append(432));
    }

    [Fact]
    public void Min_tokens_lets_no_stop_string_end_a_shorter_completion()
    {
        // Without min_tokens "Once" ends the completion on its first token, with no text.
        var early = StopConditions.For(Stories, new SamplingOptions(StopStrings: ["Once", " a"]), [1]);
        Assert.Equal(new StopCheck("", true, "stop"), early.Append(403));

        // With min_tokens 2 the first "Once" is text; " a" on the third token still stops it.
        var held = StopConditions.For(Stories, new SamplingOptions(StopStrings: ["Once", " a"], MinTokens: 2), [1]);
        var (text, steps) = Run(held, [403, 407, 261, 378]);
        Assert.Equal("Once upon", text);
        Assert.Equal(3, steps.Count);
        Assert.Equal(" a", held.MatchedStopString);

        // "n a t" spans tokens 2-4: armed from token 3 on, it is still found when it began earlier (as vLLM does)...
        var spanning = StopConditions.For(Stories, new SamplingOptions(StopStrings: ["n a t"], MinTokens: 3), [1]);
        var (spanText, spanSteps) = Run(spanning, [403, 407, 261, 378, 432]);
        Assert.Equal(("Once upo", 4), (spanText, spanSteps.Count));
        // ...but not when it is complete before min_tokens.
        var late = StopConditions.For(Stories, new SamplingOptions(MaxTokens: 5, StopStrings: ["n a t"], MinTokens: 5), [1]);
        var (all, lateSteps) = Run(late, [403, 407, 261, 378, 432]);
        Assert.Equal((5, "length"), (lateSteps.Count, late.FinishReason));
        Assert.StartsWith("Once upon a t", all);

        // The matcher alone: unarmed, a whole stop string passes as text; a possible prefix is still held back.
        var matcher = new StopStringMatcher(["stop"]);
        Assert.Equal(new StopStringMatch("x stop ", false, null), matcher.Push("x stop st", armed: false));
        Assert.Equal(new StopStringMatch("", true, "stop"), matcher.Push("op"));
    }

    [Fact]
    public void Eos_stops_without_text()
    {
        var stop = StopConditions.For(Stories, new SamplingOptions(), [1]);
        var (text, steps) = Run(stop, [403, 2, 407]);
        Assert.Equal("Once", text);
        Assert.Equal(new StopCheck("", true, "stop"), steps[^1]);
        Assert.Equal(2, stop.GeneratedTokens);
        Assert.Null(stop.MatchedStopString);
    }

    [Fact]
    public void Max_tokens_stops_with_length_and_releases_held_text()
    {
        // " upon" is a prefix of the stop string "upon a" and is held back, until max_tokens ends generation.
        var stop = StopConditions.For(Stories, new SamplingOptions(MaxTokens: 2, StopStrings: ["upon a"]), [1]);
        var (text, steps) = Run(stop, [403, 407, 261]);
        Assert.Equal("Once upon", text);
        Assert.Equal(["Once", " upon"], steps.Select(s => s.Text));
        Assert.Equal(new StopCheck(" upon", true, "length"), steps[^1]);
    }

    [Fact]
    public void Continuation_after_a_prompt_keeps_its_leading_space()
    {
        // The completion's first token " there" follows "time", not BOS, so its space is real text.
        var prompt = Stories.Encode("Once upon a time", addBos: true);
        var stop = StopConditions.For(Stories, new SamplingOptions(MaxTokens: 3), prompt);
        Assert.Equal(" there was a", Run(stop, Stories.Encode("there was a", addBos: false)).Text);
    }

    [Fact]
    public void Character_split_across_byte_tokens_is_emitted_whole_or_flushed_at_the_end()
    {
        // "é" = C3 A9 → <0xC3><0xA9>.
        var whole = StopConditions.For(Stories, new SamplingOptions(MaxTokens: 10), [1]);
        Assert.Equal(new StopCheck("", false, null), whole.Append(0xC3 + 3));
        Assert.Equal(new StopCheck("é", false, null), whole.Append(0xA9 + 3));

        // Cut off mid-character by max_tokens: the dangling byte becomes one U+FFFD, reported once.
        var cut = StopConditions.For(Stories, new SamplingOptions(MaxTokens: 2), [1]);
        Assert.Equal(new StopCheck("Once", false, null), cut.Append(403));
        Assert.Equal(new StopCheck("\uFFFD", true, "length"), cut.Append(0xC3 + 3));
    }

    [Fact]
    public void Invalid_limits_are_refused()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new StopConditions(Stories.CreateIncrementalDecoder(), [2], 0, null));
        Assert.Contains("max_tokens must be >= 1, got 0", ex.Message);
        Assert.Throws<ArgumentException>(() => new StopStringMatcher(["ok", ""]));
    }
}
