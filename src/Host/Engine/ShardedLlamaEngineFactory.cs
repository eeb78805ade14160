using ActorRing.Actors;
using ActorRing.Actors.Engine;
using ActorRing.Model;
using ActorRing.Model.Batching;
using ActorRing.Transport;

namespace ActorRing.Host.Engine;

/// <summary>The real model: this rank's <see cref="ShardedLlama"/> shard of the model in <paramref name="modelDir"/>.</summary>
public sealed class ShardedLlamaEngineFactory : IShardEngineFactory
{
    private readonly string _modelDir;
    private readonly ModelLoadOptions _options;

    private readonly ulong? _randomSeed;

    /// <summary>Reads only the model's configuration (cheap), so a wrong --model fails before any network
    /// activity with the model layer's own message.</summary>
    public ShardedLlamaEngineFactory(string modelDir, ModelLoadOptions options)
    {
        _modelDir = modelDir;
        _options = options;
        Config = ModelDirectory.Recognise(modelDir).ReadConfig();
    }

    private ShardedLlamaEngineFactory(ModelConfig config, ulong seed, ModelLoadOptions options)
    {
        _modelDir = "";
        _options = options;
        _randomSeed = seed;
        Config = config;
    }

    /// <summary>A model of <paramref name="config"/>'s shape with seeded random weights (every rank builds its
    /// own slice of the same model), for measuring the runtime at a real model's size without its files.</summary>
    public static ShardedLlamaEngineFactory Random(ModelConfig config, ulong seed, ModelLoadOptions options) => new(config, seed, options);

    public ModelConfig Config { get; }

    public string ModelFingerprint => (_randomSeed is ulong seed ? $"{Config.Fingerprint}-random{seed}" : Config.Fingerprint) + LongRopeFactors;

    /// <summary>
    /// LongRoPE picks its short or long factors by the context a rank loads with (<c>--context</c>), which is each
    /// rank's own option: ranks that would pick different sets compute different attention, so their fingerprints
    /// differ and the ring is refused at registration instead of answering wrongly.
    /// </summary>
    private string LongRopeFactors => Config.RopeScaling is LongRopeScaling rope
        ? _options.ContextFor(Config) > rope.OriginalMaxPositionEmbeddings ? "-longrope-long" : "-longrope-short"
        : "";

    public IShardEngine Load(ICollectives comm, IProgress<double> progress, CancellationToken cancellationToken) =>
        new Engine(_randomSeed is ulong seed
            ? ShardedLlama.CreateRandom(Config, seed, comm, _options)
            : ShardedLlama.Load(_modelDir, comm, _options, progress));

    private sealed class Engine(ShardedLlama model) : IShardEngine
    {
        /// <summary>The model's step, with the time its collectives took (the model keeps running totals).</summary>
        public StepResult Execute(StepPlan plan)
        {
            var (allReduce, gather) = (model.AllReduceTime, model.GatherTime);
            var result = model.Execute(plan);
            return result with
            {
                AllReduceMs = (model.AllReduceTime - allReduce).TotalMilliseconds,
                GatherMs = (model.GatherTime - gather).TotalMilliseconds,
            };
        }

        public int KvBlocks => model.KvBlocks;

        public int KvBlockSize => ShardedLlama.KvBlockSize;

        public int ContextLength => model.ContextLength;

        public void Dispose() => model.Dispose();
    }
}
