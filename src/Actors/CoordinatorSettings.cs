namespace ActorRing.Actors;

/// <summary>What rank 0's coordinator expects of the cluster, and how long it waits for each phase.</summary>
/// <param name="WorldSize">Number of ranks that must register before the ring is formed.</param>
/// <param name="Secret">Cluster secret (ACTORRING_SECRET) that every rank proves at registration.</param>
/// <param name="ModelFingerprint">Rank 0's model fingerprint; every rank must report the same.</param>
/// <param name="StepTimeout">Longest a rank may take for one forward step before the request fails.</param>
/// <param name="RingTimeout">Longest ring formation may take (transport deadline plus slack).</param>
/// <param name="LoadTimeout">Longest shard loading may take on every rank.</param>
/// <param name="RetryDelay">Pause before forming the ring again after a ring failure.</param>
public sealed record CoordinatorSettings(
    int WorldSize,
    byte[] Secret,
    string ModelFingerprint,
    TimeSpan StepTimeout,
    TimeSpan RingTimeout,
    TimeSpan LoadTimeout,
    TimeSpan RetryDelay)
{
    /// <summary>How long requests in flight wait for a lost ring to come back (a rank restarted, or back from a
    /// pause) before they fail naming the lost rank. Zero fails them at once.</summary>
    public TimeSpan RecoveryTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Run two short internal requests through the step loop when the cluster first becomes ready, so no
    /// client's request pays the loop's first-call costs (see <see cref="Coordinator"/>'s WarmUp). Off by default:
    /// tests that count a fake engine's steps must see only their own.</summary>
    public bool WarmUp { get; init; }

    public static CoordinatorSettings Create(int worldSize, byte[] secret, string fingerprint) => new(
        worldSize, secret, fingerprint,
        StepTimeout: TimeSpan.FromSeconds(60),
        RingTimeout: TimeSpan.FromSeconds(150),
        LoadTimeout: TimeSpan.FromMinutes(30),
        RetryDelay: TimeSpan.FromSeconds(2));
}
