using ActorRing.Model.Batching;
using ActorRing.Model.Sampling;
using ActorRing.Model.Tokenization;
using ActorRing.Transport;

namespace ActorRing.Model.Tests.Support;

/// <summary>What one generation produced (on rank 0; other ranks return an empty result).</summary>
internal sealed record GenerationResult(IReadOnlyList<int> GeneratedIds, string FinishReason, string Text);

/// <summary>
/// One request driven the way the serving loop drives it, without the actors: rank 0 plans each step (the
/// prompt, then one token per step, in a block table of its own), sends the plan over the ring, executes
/// it, samples with the seeded <see cref="Sampler"/> and applies the stop conditions; every other rank
/// executes the plans it receives until a stop plan.
/// </summary>
internal static class LockstepGeneration
{
    public static GenerationResult Run(ShardedLlama model, ICollectives comm, IReadOnlyList<int> prompt, SamplingOptions options, ITextTokenizer? tokenizer)
    {
        var channel = new PlanChannel(comm);
        if (comm.Rank != 0)
        {
            while (true)
            {
                var plan = channel.Receive();
                if (plan.Stop) return new GenerationResult([], "", "");
                model.Execute(plan);
            }
        }
        var sampler = new Sampler(options);
        var stop = tokenizer is null ? null : StopConditions.For(tokenizer, options, prompt);
        var blocks = Enumerable.Range(0, model.KvBlocks).ToArray();
        var history = new List<int>(prompt);
        var generated = new List<int>();
        var text = new System.Text.StringBuilder();
        int[] feed = prompt.ToArray();
        int position = 0;
        string finish;
        while (true)
        {
            var step = new SequenceStep(0, position, feed, blocks[..((position + feed.Length + ShardedLlama.KvBlockSize - 1) / ShardedLlama.KvBlockSize)], true);
            var plan = new StepPlan(channel.LastStep + 1, [step]);
            channel.Send(plan);
            var logits = model.Execute(plan).Logits[0];
            position += feed.Length;
            int token = sampler.Sample(logits, history);
            generated.Add(token);
            history.Add(token);
            if (stop is not null)
            {
                var check = stop.Append(token);
                text.Append(check.Text);
                if (check.Stopped)
                {
                    finish = check.FinishReason ?? "stop";
                    break;
                }
            }
            else if (generated.Count >= options.MaxTokens)
            {
                finish = "length";
                break;
            }
            if (position >= model.ContextLength)
            {
                finish = "length";
                break;
            }
            feed = [token];
        }
        channel.Send(new StepPlan(channel.LastStep + 1, [], Stop: true));
        return new GenerationResult(generated, finish, text.ToString());
    }
}
