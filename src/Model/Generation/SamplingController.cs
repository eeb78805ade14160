using ActorRing.Model.Sampling;
using ActorRing.Model.Tokenization;

namespace ActorRing.Model.Generation;

/// <summary>
/// The standard controller: the seeded <see cref="Sampler"/> picks tokens; <see cref="StopConditions"/>
/// stops at EOS, a stop string or max_tokens and yields the completion text piece by piece.
/// </summary>
public sealed class SamplingController : IGenerationController
{
    private readonly Sampler _sampler;
    private readonly StopConditions _stop;
    private readonly Action<string>? _onText;
    private readonly System.Text.StringBuilder _text = new();

    public SamplingController(ITextTokenizer tokenizer, SamplingOptions options, IReadOnlyList<int> promptIds, Action<string>? onText = null)
    {
        _sampler = new Sampler(options);
        _stop = StopConditions.For(tokenizer, options, promptIds);
        _onText = onText;
    }

    /// <summary>The completion so far (stop strings cut, EOS not rendered).</summary>
    public string Text => _text.ToString();

    public ulong Seed => _sampler.Seed;

    public string? FinishReason => _stop.FinishReason;

    public int Choose(ReadOnlySpan<float> logits, IReadOnlyList<int> sequence) => _sampler.Sample(logits, sequence);

    public bool Accept(int token)
    {
        var check = _stop.Append(token);
        if (check.Text.Length > 0)
        {
            _text.Append(check.Text);
            _onText?.Invoke(check.Text);
        }
        return check.Stopped;
    }
}
