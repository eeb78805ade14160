namespace ActorRing.Actors;

/// <summary>
/// Marker of every control-plane message that may cross process boundaries. The serialization binding in
/// hocon/actorring.hocon maps this interface to <see cref="Serialization.ControlMessageSerializer"/>, so a
/// message that is not behind it can never reach the (unsafe) default serializers by accident.
/// </summary>
public interface IControlMessage;

/// <summary>Registration: a worker proving the cluster secret to the coordinator, and the coordinator to it.</summary>
public interface IRegistrationMessage : IControlMessage;

/// <summary>Cluster lifecycle between the coordinator and the workers: ring formation, loading, the step loop's
/// start and end, leaving and shutdown.</summary>
public interface IClusterMessage : IControlMessage;

/// <summary>The client API on rank 0 (generate, stream, cancel, status, shutdown), for rank 0's own process only.</summary>
public interface IClientMessage : IControlMessage;

/// <summary>The control protocol version; a rank with another version is refused at registration.</summary>
public static class ControlProtocol
{
    /// <summary>3: step plans travel over the ring (StartServing, ServingStopped; RunStep is gone), and the
    /// coordinator proves the secret in <see cref="Registered"/>, after the worker, not in <see cref="Challenge"/>.
    /// 4: rank 0 announces that it stops (<see cref="LeaveCluster"/>, <see cref="MasterLeaving"/>,
    /// <see cref="MasterLeavingNoted"/>), which a rank of version 3 could not read.</summary>
    public const int Version = 4;

    /// <summary>Actor system name on every rank; remote paths include it, so all ranks must agree.</summary>
    public const string SystemName = "actorring";

    /// <summary>Name of the coordinator under /user on rank 0.</summary>
    public const string CoordinatorName = "coordinator";
}

// ---------------------------------------------------------------- registration (worker <-> coordinator)

/// <summary>Worker to coordinator: opens registration. <paramref name="ClientNonce"/> lets the worker check the
/// coordinator's own proof of the secret (in <see cref="Registered"/>), so a rogue coordinator cannot drive the rank.</summary>
public sealed record Hello(int Rank, string ClientNonce) : IRegistrationMessage;

/// <summary>Coordinator to worker: a fresh one-time nonce, and nothing derived from the secret (the worker proves
/// first). <paramref name="ClientNonce"/> echoes the Hello's, so an answer to an earlier Hello is recognised.</summary>
public sealed record Challenge(string ClientNonce, string ServerNonce) : IRegistrationMessage;

/// <summary>Worker to coordinator: identity plus HMAC-SHA256 proof over both nonces and every identity field.</summary>
public sealed record Register(
    int Rank, int WorldSize, int ProtocolVersion, string ModelFingerprint,
    string ClientNonce, string ServerNonce, string Proof) : IRegistrationMessage;

/// <summary>Coordinator to worker, once the worker's proof verified: the coordinator's own proof over the
/// registration's nonces, rank and world size. <paramref name="ServerNonce"/> names the registration.</summary>
public sealed record Registered(int Rank, int WorldSize, string ServerNonce, string CoordinatorProof) : IRegistrationMessage;

/// <summary><paramref name="RankTaken"/>: another live process holds this rank; a process that never registered
/// stops (after a grace period in which a just-dead holder is noticed) instead of retrying for ever.
/// <paramref name="RankZeroLeaving"/>: rank 0's process is stopping and its next start will take this rank; the
/// worker keeps dialing, and nothing has failed.</summary>
public sealed record RegistrationRefused(int Rank, string Reason, bool RankTaken = false, bool RankZeroLeaving = false) : IRegistrationMessage;

/// <summary>Worker to coordinator: the coordinator's proof did not match, so this rank will not register (it sends
/// no proof of its own to an unverified peer). Lets rank 0 log the mismatch too.</summary>
public sealed record CoordinatorRefused(int Rank, string Reason) : IRegistrationMessage;

// ---------------------------------------------------------------- ring formation and loading

/// <summary>Coordinator to worker: (re)connect the data-plane ring. <paramref name="Generation"/> tags every
/// reply so that answers about an abandoned ring are ignored.</summary>
public sealed record FormRing(int Generation) : IClusterMessage;

public sealed record RingReady(int Rank, int Generation, bool ShardLoaded) : IClusterMessage;

public sealed record RingFailed(int Rank, int Generation, string Reason) : IClusterMessage;

/// <summary>Coordinator to worker: close the ring sockets (after an error elsewhere, or before shutdown).</summary>
public sealed record CloseRing(int Generation, string Reason) : IClusterMessage;

public sealed record LoadShard(int Generation) : IClusterMessage;

public sealed record LoadProgress(int Rank, double Fraction) : IClusterMessage;

public sealed record ShardLoaded(int Rank, int Generation) : IClusterMessage;

public sealed record LoadFailed(int Rank, int Generation, string Reason) : IClusterMessage;

// ---------------------------------------------------------------- serving

/// <summary>Coordinator to every worker, once the ring of <paramref name="Generation"/> is formed and every shard
/// is loaded: start the step loop on the compute thread. Rank 0's worker plans the steps; the others follow the
/// plans it sends over the ring. From here on no control message is on the per-token path.</summary>
public sealed record StartServing(int Generation) : IClusterMessage;

/// <summary>Worker to coordinator: this rank's step loop ended with an error (the ring broke, or a plan was out of
/// step); the ring of <paramref name="Generation"/> must be re-formed.</summary>
public sealed record ServingStopped(int Rank, int Generation, string Reason) : IClusterMessage;

// ---------------------------------------------------------------- client API (rank 0)

/// <summary>Sampling parameters; Temperature 0 means greedy. A seed makes sampling reproducible at any world size
/// (null draws a random one). <paramref name="LogitBias"/>: token id to a bias added to its logit (OpenAI's logit_bias).
/// <paramref name="MinTokens"/>: no <paramref name="StopTokenIds"/> id is picked before that many tokens (vLLM's min_tokens).
/// <paramref name="JsonObject"/>: the completion is one JSON object, ended by a stop id right after it (OpenAI's
/// response_format json_object); <paramref name="JsonSchema"/>: the same for one that follows this JSON Schema (json_schema);
/// <paramref name="ThinkFirst"/>: that JSON comes after the think block of a reasoning model.</summary>
public sealed record SamplingSpec(
    double Temperature = 0, int TopK = 0, double TopP = 1.0, ulong? Seed = null, double RepetitionPenalty = 1.0,
    int MaxTokens = 256, int[]? StopTokenIds = null, double MinP = 0, double PresencePenalty = 0,
    double FrequencyPenalty = 0, int? Logprobs = null, IReadOnlyDictionary<int, float>? LogitBias = null, int MinTokens = 0,
    bool JsonObject = false, string? JsonSchema = null, Model.Sampling.ThinkBlock ThinkFirst = Model.Sampling.ThinkBlock.None) : IClientMessage;

/// <summary>
/// Client to coordinator. Requests run concurrently, batched by the scheduler. <paramref name="Slot"/> is
/// ignored and <paramref name="StartPosition"/> must be 0: a conversation continues by sending its whole
/// history again (both fields stay so existing callers need no change).
/// </summary>
/// <paramref name="StopStrings"/> end the request when the completion's text contains one (checked by the
/// scheduler with the server's tokenizer, so a stop costs no extra step; the text before it is the answer).
public sealed record GenerateRequest(string RequestId, int Slot, int[] PromptTokens, int StartPosition, SamplingSpec Sampling,
    string[]? StopStrings = null) : IClientMessage;

/// <summary>A generated token; with log-probabilities when the request's <see cref="SamplingSpec.Logprobs"/> asked
/// for them (<paramref name="TopIds"/> and <paramref name="TopLogprobs"/> pair up, most likely first).</summary>
public sealed record TokenGenerated(string RequestId, int Index, int TokenId, float? Logprob = null,
    int[]? TopIds = null, float[]? TopLogprobs = null) : IClientMessage;

/// <summary><paramref name="TokenIds"/> includes a final stop token, as generate's ids do.
/// <paramref name="PositionAfter"/> counts the tokens the request fed (prompt and every generated token but
/// the last). <paramref name="PrefillMs"/> is the time from admission to the first token;
/// <paramref name="ControlShare"/> the share of its decode steps' time rank 0's loop spent outside the model
/// (planning, sending the plan, sampling). <paramref name="CachedPromptTokens"/>: the prompt tokens whose KV came
/// from the prefix cache, so their prefill was skipped.</summary>
public sealed record GenerationCompleted(
    string RequestId, int[] TokenIds, string FinishReason, int PositionAfter, double PrefillMs, double MsPerToken,
    double ControlShare, int CachedPromptTokens = 0) : IClientMessage;

/// <summary><paramref name="ContextLost"/>: the request continued a conversation the cluster no longer holds;
/// the same prompt can be sent again as a new conversation (start position 0).</summary>
public sealed record GenerationFailed(string RequestId, string Reason, bool ContextLost = false) : IClientMessage;

public sealed record CancelGeneration(string RequestId) : IClientMessage;

public sealed record GetClusterStatus : IClientMessage
{
    public static readonly GetClusterStatus Instance = new();
}

public sealed record ClusterStatus(string Phase, int RegisteredRanks, int WorldSize, bool Ready, string Detail) : IClientMessage;

/// <summary>Client to coordinator: stop every rank (one-shot runs, or rank 0 shutting down).</summary>
public sealed record ShutdownCluster(string Reason) : IClientMessage;

/// <summary>Coordinator to worker: the cluster is going down; stop this process.</summary>
public sealed record Shutdown(string Reason) : IClusterMessage;

/// <summary>Client to coordinator, as rank 0's process stops on its own (`/exit`, Ctrl-C, SIGTERM): the other ranks
/// are told so, and stay up for its next incarnation. Answered with the status once they have heard it.</summary>
public sealed record LeaveCluster(string Reason) : IClientMessage;

/// <summary>Coordinator to worker: rank 0 is stopping; close the ring and dial it again (an ordered departure, so
/// no failure to report). The worker answers <see cref="MasterLeavingNoted"/>.</summary>
public sealed record MasterLeaving(string Reason) : IClusterMessage;

/// <summary>Worker to coordinator: <see cref="MasterLeaving"/> arrived, so rank 0 may go.</summary>
public sealed record MasterLeavingNoted(int Rank) : IClusterMessage;

/// <summary>Worker to coordinator, on a clean stop (Ctrl-C, SIGTERM): lets in-flight work fail at once with the
/// reason instead of after the failure detector's timeout.</summary>
public sealed record RankLeaving(int Rank, string Reason) : IClusterMessage;
