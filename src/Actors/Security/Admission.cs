namespace ActorRing.Actors.Security;

/// <summary>
/// The coordinator's side of control-plane registration, kept apart from the actor so that it can be tested
/// alone and moved with the handlers that call it.
/// <para>
/// Prove before you learn: a <see cref="Hello"/> gets only a fresh one-time nonce. The worker proves the
/// secret over both nonces and every identity field (<see cref="Register"/>) before the coordinator hands out
/// a proof of its own (in <see cref="Registered"/>), so a stranger that dials master_port collects no MAC it
/// could attack offline. The ring handshake keeps the same order: the dialling side proves first.
/// </para>
/// <para>Open challenges are bounded in number and lifetime, so a flood of Hellos costs a fixed amount of
/// memory (the oldest challenges give way; a real worker whose challenge was evicted simply retries).</para>
/// </summary>
public sealed class Admission
{
    public const int MaxOpenChallenges = 256;
    public static readonly TimeSpan ChallengeLifetime = TimeSpan.FromSeconds(30);

    /// <summary>Distinct refusals remembered for log-once; beyond this, the memory is cleared and starts over.</summary>
    private const int MaxRememberedRefusals = 1024;

    private readonly byte[] _secret;
    private readonly int _worldSize;
    private readonly string _fingerprint;
    private readonly Func<DateTime> _clock;
    private readonly Dictionary<string, DateTime> _openChallenges = new(StringComparer.Ordinal);
    private readonly Queue<string> _challengeOrder = new();
    private readonly HashSet<string> _loggedRefusals = new(StringComparer.Ordinal);

    public Admission(byte[] secret, int worldSize, string fingerprint, Func<DateTime>? clock = null)
    {
        _secret = secret;
        _worldSize = worldSize;
        _fingerprint = fingerprint;
        _clock = clock ?? (() => DateTime.UtcNow);
    }

    public int OpenChallenges => _openChallenges.Count;

    /// <summary>The answer to a Hello: a one-time server nonce, and nothing that depends on the secret.</summary>
    public Challenge Open(Hello hello)
    {
        var now = _clock();
        while (_challengeOrder.Count > 0 &&
               (_openChallenges.Count >= MaxOpenChallenges || !_openChallenges.TryGetValue(_challengeOrder.Peek(), out var expiry) || expiry < now))
        {
            _openChallenges.Remove(_challengeOrder.Dequeue());
        }
        var serverNonce = RegistrationProof.NewNonce();
        _openChallenges[serverNonce] = now + ChallengeLifetime;
        _challengeOrder.Enqueue(serverNonce);
        return new Challenge(hello.ClientNonce, serverNonce);
    }

    /// <summary>
    /// Null when <paramref name="r"/> proves the secret and matches this cluster, else the refusal. The nonce and
    /// the proof are checked first: a peer that cannot prove the secret learns nothing about the cluster.
    /// </summary>
    public string? Check(Register r)
    {
        // A nonce is good for one attempt only, so a captured Register cannot be replayed.
        if (!_openChallenges.Remove(r.ServerNonce, out var expiry) || expiry < _clock())
            return "registration without a valid challenge (stale or replayed); send Hello first";
        if (!RegistrationProof.Matches(RegistrationProof.Worker(_secret, r), r.Proof))
            return "wrong cluster secret: the proof does not match; set the same ACTORRING_SECRET on every rank";
        if (r.ProtocolVersion != ControlProtocol.Version)
            return $"protocol version {r.ProtocolVersion} does not match the coordinator's {ControlProtocol.Version}; run the same actorring build on every rank";
        if (r.WorldSize != _worldSize)
            return $"world_size {r.WorldSize} does not match the coordinator's {_worldSize}; fix world_size in this rank's ring file";
        if (r.Rank < 0 || r.Rank >= _worldSize)
            return $"rank {r.Rank} is outside [0, {_worldSize})";
        if (!string.Equals(r.ModelFingerprint, _fingerprint, StringComparison.Ordinal))
            return $"model fingerprint {r.ModelFingerprint} does not match rank 0's {_fingerprint}; every rank must serve the same model (--model)";
        return null;
    }

    /// <summary>The acceptance of a checked <paramref name="r"/>, carrying the coordinator's own proof, bound to
    /// this registration's nonces, rank and world size.</summary>
    public Registered Accept(Register r) => new(r.Rank, _worldSize, r.ServerNonce,
        RegistrationProof.Coordinator(_secret, r.ClientNonce, r.ServerNonce, r.Rank, _worldSize));

    /// <summary>True the first time <paramref name="peer"/> is refused for <paramref name="reason"/>: a peer retries
    /// every few seconds, and one line per peer and reason keeps the log readable.</summary>
    public bool FirstRefusal(string peer, string reason)
    {
        if (_loggedRefusals.Count >= MaxRememberedRefusals) _loggedRefusals.Clear();
        return _loggedRefusals.Add(peer + "|" + reason);
    }
}
