using ActorRing.Model.Batching;
using ActorRing.Model.Tests.Support;
using ActorRing.Transport;

namespace ActorRing.Model.Tests;

/// <summary>
/// The batched step: prefill chunks and decodes of different sequences in one step, over paged KV blocks,
/// give every sequence exactly the logits it gets alone (batch invariance), and the plan channel keeps the
/// ranks in lockstep.
/// </summary>
public sealed class BatchedStepTests
{
    private const int Generate = 4;

    /// <summary>Prompts of different lengths (1 token to more than a block), from the bundled model's vocabulary.</summary>
    private static readonly int[][] Prompts =
    [
        [1, 403, 407, 261, 378],
        [1],
        [1, 22, 33, 44, 55, 66, 77, 88, 99, 110, 121, 132, 143, 154, 165, 176, 187, 198, 209],
        [1, 300, 301],
        [1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41],
    ];

    private sealed class Sequence(int id, int[] prompt, int[] blocks, int startStep)
    {
        public int Id = id;
        public int[] Prompt = prompt;
        public int[] Blocks = blocks;
        public int StartStep = startStep;
        public int Fed;
        public List<int> Generated = new();
        public List<float[]> Logits = new();
        public bool Done => Generated.Count == Generate;
    }

    /// <summary>
    /// Drives sequences to <see cref="Generate"/> greedy tokens each: every step carries the next prefill chunk
    /// (at most <paramref name="chunk"/> tokens) or the next decode token of each started sequence, and rank
    /// 0's greedy pick is broadcast so all ranks feed the same tokens.
    /// </summary>
    private static List<Sequence> Run(ShardedLlama model, ICollectives comm, List<Sequence> sequences, int chunk)
    {
        for (int step = 0; sequences.Any(s => !s.Done); step++)
        {
            var work = new List<(Sequence Seq, SequenceStep Step)>();
            foreach (var s in sequences.Where(s => !s.Done && s.StartStep <= step))
            {
                int[] tokens;
                int start;
                if (s.Fed < s.Prompt.Length)
                {
                    start = s.Fed;
                    tokens = s.Prompt[s.Fed..Math.Min(s.Prompt.Length, s.Fed + chunk)];
                }
                else
                {
                    start = s.Prompt.Length + s.Generated.Count - 1;
                    tokens = [s.Generated[^1]];
                }
                s.Fed = Math.Max(s.Fed, start + tokens.Length);
                bool sample = start + tokens.Length >= s.Prompt.Length;
                work.Add((s, new SequenceStep(s.Id, start, tokens, s.Blocks, sample)));
            }
            var result = model.Execute(new StepPlan(step + 1, work.Select(w => w.Step).ToArray()));
            var sampled = work.Where(w => w.Step.NeedsLogits).ToList();
            var picks = new int[sampled.Count];
            for (int i = 0; i < sampled.Count && comm.Rank == 0; i++)
            {
                sampled[i].Seq.Logits.Add(result.Logits[i].ToArray()); // a copy: the model reuses its rows next step
                picks[i] = TestPaths.ArgMax(result.Logits[i]);
            }
            if (comm.WorldSize > 1 && picks.Length > 0) comm.Broadcast<int>(picks, 0);
            for (int i = 0; i < sampled.Count; i++) sampled[i].Seq.Generated.Add(picks[i]);
        }
        return sequences;
    }

    private static ModelLoadOptions Options => new() { ContextLength = 64, Threads = 1, KvCacheTokens = 64 * 16 };

    [Theory]
    [InlineData(1, ComputeDType.F32)]
    [InlineData(2, ComputeDType.F32)]
    [InlineData(1, ComputeDType.BF16)]
    [InlineData(1, ComputeDType.F32, Quantization.WeightQuantization.Q8_0)]
    [InlineData(2, ComputeDType.F32, Quantization.WeightQuantization.Q4_0)]
    [InlineData(2, ComputeDType.F32, Quantization.WeightQuantization.None, ComputeDType.BF16)] // a bf16 KV cache under f32 weights
    public void A_sequence_gets_bit_identical_logits_alone_and_in_any_batch(int worldSize, ComputeDType dtype,
        Quantization.WeightQuantization quant = default, ComputeDType? kvDtype = null) =>
        AssertBatchInvariant(TestPaths.Hf, worldSize, dtype, quant, kvDtype);

    /// <summary>
    /// A mixture of experts: rows of one step pick different experts, and each expert runs once over the rows
    /// that picked it, gathered; still every sequence gets its solo logits bit for bit. qwen3_moe with 16 experts,
    /// 4 per token, layer 1 dense (mlp_only_layers).
    /// </summary>
    [Theory]
    [InlineData(1, Quantization.WeightQuantization.None)]
    [InlineData(2, Quantization.WeightQuantization.None)]
    [InlineData(2, Quantization.WeightQuantization.Q8_0)]
    public void A_sequence_of_a_mixture_of_experts_model_gets_bit_identical_logits_alone_and_in_any_batch(int worldSize, Quantization.WeightQuantization quant)
    {
        string dir = Path.Combine(Path.GetTempPath(), "actorring-moe-batch-" + Guid.NewGuid().ToString("N"));
        try
        {
            new SyntheticModel
            {
                ModelType = "qwen3_moe", Hidden = 64, HeadDim = 16, Vocab = 512, Layers = 3, Experts = 16, ExpertsPerToken = 4,
                ExpertIntermediate = 64, Intermediate = 96, DenseLayers = [1], MatrixScale = 0.7f,
            }.Build(seed: 31).WriteTo(dir);
            AssertBatchInvariant(dir, worldSize, ComputeDType.F32, quant, null);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void AssertBatchInvariant(string modelDir, int worldSize, ComputeDType dtype, Quantization.WeightQuantization quant, ComputeDType? kvDtype)
    {
        var perRank = InProcessGroup.Run(worldSize, comm =>
        {
            using var model = ShardedLlama.Load(modelDir, comm, Options with { DType = dtype, KvDType = kvDtype, Quant = quant, QuantizeLmHead = quant != default });
            // Alone: one sequence at a time, its whole prompt in one step, in blocks 0.. .
            var solo = Prompts.Select((p, i) => Run(model, comm, [new Sequence(i, p, [0, 1, 2, 3], 0)], chunk: 64)[0]).ToList();
            // Together: prompts chunked by 3 tokens, sequences joining at different steps (so prefill chunks and
            // decodes share steps and batch sizes vary), each in scattered blocks of its own.
            var batched = Run(model, comm, Prompts.Select((p, i) =>
                new Sequence(i, p, [40 - i, 20 + 2 * i, 10 + 3 * i, 60 - i], startStep: i % 3)).ToList(), chunk: 3);
            return (solo, batched);
        });
        var (alone, together) = perRank[0];
        for (int i = 0; i < Prompts.Length; i++)
        {
            Assert.Equal(alone[i].Generated, together[i].Generated);
            Assert.Equal(Generate, together[i].Logits.Count);
            for (int t = 0; t < Generate; t++)
            {
                var a = alone[i].Logits[t];
                var b = together[i].Logits[t];
                for (int v = 0; v < a.Length; v++)
                    Assert.True(BitConverter.SingleToInt32Bits(a[v]) == BitConverter.SingleToInt32Bits(b[v]),
                        $"sequence {i}, token {t}, logit {v}: {b[v]} in the batch, {a[v]} alone");
            }
        }
    }

    /// <summary>
    /// A step in which no row needs logits (the early chunks of a long prompt, alone) skips the last layer's
    /// attention and FFN, and their all-reduces, on every rank: the prompt's first logits and every later one are
    /// bit-identical to those of a prefill in one step.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void A_prompt_prefilled_in_chunks_that_sample_nothing_gets_the_logits_of_a_one_step_prefill(int worldSize)
    {
        var perRank = InProcessGroup.Run(worldSize, comm =>
        {
            using var model = ShardedLlama.Load(TestPaths.Hf, comm, Options);
            var prompt = Prompts[1]; // 19 tokens: chunks of 4 leave four steps that sample nothing
            var whole = Run(model, comm, [new Sequence(0, prompt, [0, 1, 2, 3], 0)], chunk: 64)[0];
            var chunked = Run(model, comm, [new Sequence(1, prompt, [4, 5, 6, 7], 0)], chunk: 4)[0];
            return (whole, chunked);
        });
        var (one, chunks) = perRank[0];
        Assert.Equal(one.Generated, chunks.Generated);
        for (int t = 0; t < Generate; t++)
            Assert.Equal(one.Logits[t].Select(BitConverter.SingleToInt32Bits), chunks.Logits[t].Select(BitConverter.SingleToInt32Bits));
    }

    /// <summary>
    /// What the prefix cache relies on: a sequence that starts its prefill after two full blocks another sequence
    /// wrote (sharing them read-only, as the scheduler does on a hit) gets bit-identical logits to a fresh
    /// prefill of its whole prompt, while the sequence that wrote them keeps decoding beside it.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void A_sequence_reusing_another_sequences_full_blocks_gets_the_logits_of_a_fresh_prefill(int worldSize)
    {
        var history = Prompts[2].Concat(Prompts[4]).Concat(Prompts[0]).ToArray(); // 35 tokens: two full blocks and 3
        int[] turn = [.. history[..32], 300, 301, 302, 303, 304];
        var perRank = InProcessGroup.Run(worldSize, comm =>
        {
            using var model = ShardedLlama.Load(TestPaths.Hf, comm, Options);
            var fresh = Run(model, comm, [new Sequence(0, turn, [5, 6, 7, 8], 0)], chunk: 64)[0];
            // The first sequence writes blocks 10 and 11 (positions 0..31) and keeps going; the second joins two
            // steps later with those blocks and its own 20 and 21, prefilling from position 32 only.
            var writer = new Sequence(1, history, [10, 11, 12, 13], 0);
            var reader = new Sequence(2, turn, [10, 11, 20, 21], startStep: 2) { Fed = 32 };
            Run(model, comm, [writer, reader], chunk: 16);
            return (fresh, reader);
        });
        var (alone, shared) = perRank[0];
        Assert.Equal(alone.Generated, shared.Generated);
        for (int t = 0; t < Generate; t++)
            Assert.True(alone.Logits[t].Select(BitConverter.SingleToInt32Bits).SequenceEqual(shared.Logits[t].Select(BitConverter.SingleToInt32Bits)),
                $"token {t}: the logits after reusing cached blocks differ from a fresh prefill's");
    }

    [Fact]
    public void A_plan_naming_a_block_outside_the_cache_is_refused_with_the_numbers()
    {
        InProcessGroup.Run(1, comm =>
        {
            using var model = ShardedLlama.Load(TestPaths.Hf, comm, Options);
            var e = Assert.Throws<ModelLoadException>(() => model.Execute(new StepPlan(1, [new SequenceStep(7, 0, [1, 2], [64], true)])));
            Assert.Equal("sequence 7: block 64 is outside the KV cache's [0, 64)", e.Message);
            e = Assert.Throws<ModelLoadException>(() => model.Execute(new StepPlan(1, [new SequenceStep(7, 15, [1, 2], [0], true)])));
            Assert.Equal("sequence 7: its block table has 1 blocks but positions up to 17 need 2", e.Message);
            return 0;
        });
    }

    [Fact]
    public void Plans_cross_the_ring_intact_and_a_skipped_step_fails_the_receiver()
    {
        var big = new SequenceStep(3, 0, Enumerable.Range(0, 2000).ToArray(), Enumerable.Range(0, 125).ToArray(), true);
        var results = InProcessGroup.Run(2, comm =>
        {
            var channel = new PlanChannel(comm);
            if (comm.Rank == 0)
            {
                channel.Send(new StepPlan(1, [new SequenceStep(1, 5, [9], [2, 4], true)]));
                channel.Send(new StepPlan(2, [big])); // larger than one frame: a second broadcast
                // Step 4 where 3 is due: written by hand, since Send refuses to skip.
                var encoded = StepPlanCodec.Encode(new StepPlan(4, []));
                var frame = new int[PlanChannel.FrameInts];
                frame[0] = encoded.Length;
                encoded.CopyTo(frame, 1);
                comm.Broadcast<int>(frame, 0);
                return "";
            }
            var first = channel.Receive();
            Assert.Equal(1, first.Step);
            Assert.Equal([9], first.Sequences[0].Tokens);
            Assert.Equal([2, 4], first.Sequences[0].BlockTable);
            var second = channel.Receive();
            Assert.Equal(big.Tokens, second.Sequences[0].Tokens);
            Assert.Equal(big.BlockTable, second.Sequences[0].BlockTable);
            return Assert.Throws<CollectiveException>(() => channel.Receive()).Message;
        });
        Assert.Equal("rank 1: received step plan 4 but expected 3; a plan was lost or duplicated, so the ranks are out of step", results[1]);
    }
}
