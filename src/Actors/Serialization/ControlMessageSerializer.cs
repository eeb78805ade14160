using System.Collections.Frozen;
using System.Runtime.Serialization;
using System.Text.Json;
using Akka.Actor;
using Akka.Serialization;

namespace ActorRing.Actors.Serialization;

/// <summary>
/// Serializes every <see cref="IControlMessage"/> as UTF-8 JSON, with the record's short type name as the
/// manifest. Only the closed set of sealed records in this assembly can be produced on receipt: an unknown
/// manifest is rejected instead of being resolved as an arbitrary CLR type (which is what makes polymorphic
/// serializers such as Hyperion unsafe on an open network).
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

    private static readonly FrozenDictionary<string, Type> TypesByManifest = typeof(IControlMessage).Assembly
        .GetTypes()
        .Where(t => t is { IsClass: true, IsSealed: true, IsAbstract: false } && typeof(IControlMessage).IsAssignableFrom(t))
        .ToFrozenDictionary(t => t.Name, StringComparer.Ordinal);

    public ControlMessageSerializer(ExtendedActorSystem system) : base(system) { }

    public override int Identifier => SerializerId;

    /// <summary>The manifests this serializer accepts (every sealed control record).</summary>
    public static IReadOnlyCollection<string> KnownManifests => TypesByManifest.Keys;

    public override string Manifest(object o)
    {
        var type = o.GetType();
        if (!TypesByManifest.ContainsKey(type.Name) || TypesByManifest[type.Name] != type)
            throw new ArgumentException($"{type.FullName} is not a sealed ActorRing control message", nameof(o));
        return type.Name;
    }

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
