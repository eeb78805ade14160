using ActorRing.Transport;

namespace ActorRing.Actors.Engine;

/// <summary>Knows the model this rank serves: its fingerprint (checked at registration, before any weight is
/// read) and how to load this rank's shard over a formed ring.</summary>
public interface IShardEngineFactory
{
    /// <summary>Hash of the model configuration; every rank must report the same one.</summary>
    string ModelFingerprint { get; }

    /// <summary>Loads this rank's shard. Runs on the compute thread; may block for a long time.</summary>
    IShardEngine Load(ICollectives comm, IProgress<double> progress, CancellationToken cancellationToken);
}
