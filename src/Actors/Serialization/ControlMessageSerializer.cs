using System.Collections.Frozen;
using System.Runtime.Serialization;
using System.Text.Json;
using Akka.Actor;
using Akka.Serialization;

namespace ActorRing.Actors.Serialization;

/// <summary>
/// Serializes every <see cref="IControlMessage"/> as UTF-8 JSON, with a constant manifest from
/// <see cref="Manifests"/>: renaming a record does not change the wire, and a new message needs a manifest of
/// its own (a test checks that every sealed control record has one). Only the records of that table can be
/// produced on receipt: an unknown manifest is rejected instead of being resolved as an arbitrary CLR type
/// (which is what makes polymorphic serializers such as Hyperion unsafe on an open network).
/// </summary>
public sealed class ControlMessageSerializer : SerializerWithStringManifest
{
    /// <summary>Akka reserves 0-100; this value is also bound in hocon/actorring.hocon.</summary>
    public const int SerializerId = 4711;

    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        // Logits are float arrays; the default (shortest round-trippable) float formatting keeps them exact.
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The wire name of every control message. These strings are the protocol: never change one (they
    /// were the records' names when the table was made, so older ranks of the same protocol version agree).</summary>
    public static readonly FrozenDictionary<Type, string> Manifests = new Dictionary<Type, string>
    {
        // registration
        [typeof(Hello)] = "Hello",
        [typeof(Challenge)] = "Challenge",
        [typeof(Register)] = "Register",
        [typeof(Registered)] = "Registered",
        [typeof(RegistrationRefused)] = "RegistrationRefused",
        [typeof(CoordinatorRefused)] = "CoordinatorRefused",
        // cluster lifecycle
        [typeof(FormRing)] = "FormRing",
        [typeof(RingReady)] = "RingReady",
        [typeof(RingFailed)] = "RingFailed",
        [typeof(CloseRing)] = "CloseRing",
        [typeof(LoadShard)] = "LoadShard",
        [typeof(LoadProgress)] = "LoadProgress",
        [typeof(ShardLoaded)] = "ShardLoaded",
        [typeof(LoadFailed)] = "LoadFailed",
        [typeof(StartServing)] = "StartServing",
        [typeof(ServingStopped)] = "ServingStopped",
        [typeof(Shutdown)] = "Shutdown",
        [typeof(RankLeaving)] = "RankLeaving",
        [typeof(MasterLeaving)] = "MasterLeaving",
        [typeof(MasterLeavingNoted)] = "MasterLeavingNoted",
        // client API
        [typeof(SamplingSpec)] = "SamplingSpec",
        [typeof(GenerateRequest)] = "GenerateRequest",
        [typeof(TokenGenerated)] = "TokenGenerated",
        [typeof(GenerationCompleted)] = "GenerationCompleted",
        [typeof(GenerationFailed)] = "GenerationFailed",
        [typeof(CancelGeneration)] = "CancelGeneration",
        [typeof(GetClusterStatus)] = "GetClusterStatus",
        [typeof(ClusterStatus)] = "ClusterStatus",
        [typeof(ShutdownCluster)] = "ShutdownCluster",
        [typeof(LeaveCluster)] = "LeaveCluster",
    }.ToFrozenDictionary();

    private static readonly FrozenDictionary<string, Type> TypesByManifest =
        Manifests.ToFrozenDictionary(m => m.Value, m => m.Key, StringComparer.Ordinal);

    public ControlMessageSerializer(ExtendedActorSystem system) : base(system) { }

    public override int Identifier => SerializerId;

    /// <summary>The manifests this serializer accepts.</summary>
    public static IReadOnlyCollection<string> KnownManifests => TypesByManifest.Keys;

    public override string Manifest(object o) =>
        Manifests.TryGetValue(o.GetType(), out var manifest) ? manifest
            : throw new ArgumentException($"{o.GetType().FullName} is not an ActorRing control message with a wire manifest (see ControlMessageSerializer.Manifests)", nameof(o));

    public override byte[] ToBinary(object obj)
    {
        Manifest(obj);
        return JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options);
    }

    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (!TypesByManifest.TryGetValue(manifest, out var type))
            throw new SerializationException($"unknown control message manifest '{manifest}' (protocol version mismatch?)");
        try
        {
            return JsonSerializer.Deserialize(bytes, type, Options)
                   ?? throw new SerializationException($"control message '{manifest}' decoded to null");
        }
        catch (JsonException e)
        {
            throw new SerializationException($"malformed control message '{manifest}': {e.Message}", e);
        }
    }
}
