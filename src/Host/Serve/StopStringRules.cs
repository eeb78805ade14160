using ActorRing.Actors.Serving;
using ActorRing.Model.Sampling;
using ActorRing.Model.Tokenization;

namespace ActorRing.Host.Serve;

/// <summary>Stop strings checked in the scheduler with the model's tokenizer: the same streaming decoder and
/// matcher as <see cref="StopConditions"/> (EOS ids and max_tokens stay the scheduler's own checks).</summary>
internal sealed class StopStringRules(ITextTokenizer tokenizer) : IStopRuleFactory
{
    public IStopRule Create(int[] promptTokens, IReadOnlyList<string> stopStrings, int minTokens) =>
        new Rule(new StopConditions(tokenizer.CreateIncrementalDecoder(promptTokens), [], int.MaxValue, stopStrings, minTokens));

    private sealed class Rule(StopConditions conditions) : IStopRule
    {
        public bool Stops(int token) => !conditions.Stopped && conditions.Append(token).Stopped;
    }
}
