using System.CommandLine;
using ActorRing.Model;
using ActorRing.Model.Quantization;
using ActorRing.Model.Sampling;

namespace ActorRing.Host.Cli;

/// <summary>
/// The options that shape every rank of a cluster (the model, its formats, its context and KV cache, the step
/// loop's limits), shared by <c>serve</c> and <c>generate</c>. generate passes the ones the user gave on to
/// each rank's <c>serve</c> process, so an option declared here reaches every rank with no other change.
/// </summary>
internal sealed class RankOptions : OptionGroup
{
    public readonly Option<string?> Model = Opt.Text("--model", "DIR",
        "Model directory: Hugging Face (config.json) or llama2.c (*.bin with tokenizer.bin) [default: the bundled stories260K]");

    public readonly ChoiceOption<ComputeDType> DType = ComputeOptions.DType();
    public readonly ChoiceOption<ComputeDType?> KvDType = ComputeOptions.KvDType();
    public readonly ChoiceOption<WeightQuantization> Quant = ComputeOptions.Quant();
    public readonly Option<bool> QuantLmHead = ComputeOptions.QuantLmHead();
    public readonly ChoiceOption<SyncPayload> SyncDType = ComputeOptions.SyncDType();

    public readonly Option<int?> Context = Opt.Int("--context",
        "Longest sequence (prompt + generated) in positions; the same on every rank [default: min(max_position_embeddings, 4096)]", 1, 1 << 20);

    public readonly Option<int?> KvCacheTokens = Opt.Int("--kv-cache-tokens",
        "KV cache size in positions, shared by the running requests [default: room for --max-batch full contexts, within half of the memory free once the weights are loaded]", 16, 1 << 28);

    public readonly Option<int> MaxBatch = Opt.Int("--max-batch", "Most requests decoded together in one step", 16, 1, 4096);
    public readonly Option<int> PrefillChunk = Opt.Int("--prefill-chunk", "Most prompt tokens one step prefills", 256, 1, 1 << 20);

    /// <summary>auto: use the model's generation_config.json when there is one.</summary>
    public readonly ChoiceOption<bool> GenerationConfig = Opt.Choice("--generation-config", "auto|ignore",
        "auto: sampling defaults from the model's generation_config.json when it has one; ignore: greedy unless told otherwise",
        "auto", text => text switch
        {
            "auto" => true,
            "ignore" => false,
            var other => throw new UsageException($"option --generation-config expects auto or ignore, got '{other}'"),
        });

    public (WeightQuantization Quant, bool LmHead) QuantChoice(ParseResult result) =>
        ComputeOptions.QuantChoice(result, Quant, QuantLmHead);

    /// <summary>The sampling defaults <c>--generation-config</c> asks for, read from <paramref name="modelDir"/>.</summary>
    public GenerationDefaults LoadGenerationDefaults(ParseResult result, string modelDir) =>
        GenerationConfig.Get(result) ? UsageException.FromUserErrors(() => GenerationDefaults.Load(modelDir)) : GenerationDefaults.None;
}
