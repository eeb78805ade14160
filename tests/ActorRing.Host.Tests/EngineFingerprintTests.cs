using ActorRing.Host.Engine;
using ActorRing.Model;
using ActorRing.Model.Tests.Support;

namespace ActorRing.Host.Tests;

/// <summary>
/// A rank's model fingerprint, which rank 0 compares at registration, covers what each rank decides from its own
/// options as well as the config: LongRoPE's factor set follows the rank's --context, so ranks whose contexts fall
/// on the two sides of the original positions must not form one ring.
/// </summary>
public sealed class EngineFingerprintTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "actorring-fingerprint-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void Ranks_picking_different_longrope_factors_have_different_fingerprints()
    {
        var model = new SyntheticModel
        {
            ModelType = "phi3", HeadDim = 16, KvHeads = 4, Tied = false,
            LongRope = ([1f, 1f, 1f, 1f, 1f, 1f, 1f, 1f], [2f, 3f, 5f, 8f, 13f, 21f, 34f, 55f], 16),
        }.Build(seed: 5);
        string dir = model.WriteTo(_dir);
        string Fingerprint(int? context) => new ShardedLlamaEngineFactory(dir, new ModelLoadOptions { ContextLength = context }).ModelFingerprint;
        Assert.Equal(Fingerprint(8), Fingerprint(16)); // both within the original 16 positions: the short factors
        Assert.Equal(Fingerprint(17), Fingerprint(null)); // the default context, min(256, 4096), is past it
        Assert.NotEqual(Fingerprint(16), Fingerprint(17));
        Assert.EndsWith("-longrope-short", Fingerprint(16));
    }
}
