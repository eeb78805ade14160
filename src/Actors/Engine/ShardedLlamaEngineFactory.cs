using ActorRing.Model;
using ActorRing.Transport;

namespace ActorRing.Actors.Engine;

/// <summary>The real model: this rank's <see cref="ShardedLlama"/> shard of the model in <paramref name="modelDir"/>.</summary>
public sealed class ShardedLlamaEngineFactory : IShardEngineFactory
{
    private readonly string _modelDir;
    private readonly ModelLoadOptions _options;

    /// <summary>Reads only the model's configuration (cheap), so a wrong --model fails before any network
    /// activity with the model layer's own message.</summary>
    public ShardedLlamaEngineFactory(string modelDir, ModelLoadOptions options)
    {
        _modelDir = modelDir;
        _options = options;
        Config = ModelDirectory.Recognise(modelDir).ReadConfig();
    }

    public ModelConfig Config { get; }

    public string ModelFingerprint => Config.Fingerprint;

    public IShardEngine Load(ICollectives comm, IProgress<double> progress, CancellationToken cancellationToken) =>
        new Engine(ShardedLlama.Load(_modelDir, comm, _options, progress));

    private sealed class Engine(ShardedLlama model) : IShardEngine
    {
        public float[]? Forward(int slot, ReadOnlySpan<int> tokens, int startPosition) => model.Forward(slot, tokens, startPosition);

        public void ResetSlot(int slot) => model.ResetSlot(slot);

        public void Dispose() => model.Dispose();
    }
}
