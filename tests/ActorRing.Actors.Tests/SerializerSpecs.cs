using System.Text;
using System.Text.Json;
using ActorRing.Actors.Serialization;
using Akka.Actor;
using Akka.Serialization;
using Akka.TestKit.Xunit2;
using Xunit.Abstractions;

namespace ActorRing.Actors.Tests;

public sealed class SerializerSpecs : TestKit
{
    public SerializerSpecs(ITestOutputHelper output) : base(TestConfig.Local, output: output) { }

    /// <summary>One sample of every control message, with non-default values in every field.</summary>
    public static TheoryData<IControlMessage> Samples() => new()
    {
        new Hello(3, "abc123"),
        new Challenge("abc123", "00FF"),
        new Register(2, 4, 1, "fp", "c", "s", "proof"),
        new Registered(2, 4, "00FF", "A1B2"),
        new RegistrationRefused(1, "wrong cluster secret"),
        new RegistrationRefused(1, "rank 1 is already registered", RankTaken: true),
        new RegistrationRefused(1, "the coordinator is not accepting ranks: rank 0 is stopping", RankZeroLeaving: true),
        new CoordinatorRefused(1, "the coordinator failed to prove the cluster secret"),
        new FormRing(7),
        new RingReady(1, 7, true),
        new RingFailed(1, 7, "handshake refused: rank 3 expected"),
        new CloseRing(8, "rank 2 is gone"),
        new LoadShard(7),
        new LoadProgress(2, 0.375),
        new ShardLoaded(2, 7),
        new LoadFailed(2, 7, "no such file"),
        new StartServing(7),
        new ServingStopped(1, 7, "rank 1: received step plan 4 but expected 3"),
        new SamplingSpec(0.8, 40, 0.95, 42, 1.1, 64, [2, 13]),
        new GenerateRequest("req-2", 1, [1, 2], 0, new SamplingSpec(StopTokenIds: null)),
        new GenerateRequest("req-4", 0, [1], 0, new SamplingSpec(LogitBias: new Dictionary<int, float> { [403] = -100f, [7] = 2.5f })),
        new TokenGenerated("req-2", 3, 407),
        new GenerationCompleted("req-2", [5, 6], "stop", 9, 4.5, 1.25, 0.01),
        new GenerationFailed("req-2", "rank 1 is gone"),
        new GenerationFailed("req-3", "the ring failed", ContextLost: true),
        new CancelGeneration("req-2"),
        GetClusterStatus.Instance,
        new ClusterStatus("Loading", 2, 4, false, "rank 1 37%"),
        new ShutdownCluster("done"),
        new Shutdown("done"),
        new RankLeaving(3, "SIGTERM"),
        new LeaveCluster("its process is stopping"),
        new MasterLeaving("its process is stopping"),
        new MasterLeavingNoted(2),
    };

    [Theory]
    [MemberData(nameof(Samples))]
    public void Every_control_message_round_trips_through_the_serializer_bound_in_hocon(IControlMessage message)
    {
        var serializer = Sys.Serialization.FindSerializerFor(message);
        Assert.IsType<ControlMessageSerializer>(serializer);
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, message);
        Assert.Equal(ControlMessageSerializer.Manifests[message.GetType()], manifest);

        var bytes = serializer.ToBinary(message);
        var back = Sys.Serialization.Deserialize(bytes, serializer.Identifier, manifest);

        Assert.IsType(message.GetType(), back);
        // Records compare arrays by reference, so compare the canonical JSON of both instead.
        Assert.Equal(JsonSerializer.Serialize(message, message.GetType()), JsonSerializer.Serialize(back, back.GetType()));
    }

    [Fact]
    public void Every_sealed_control_record_has_a_constant_manifest_and_the_manifests_never_change()
    {
        var records = typeof(IControlMessage).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsSealed: true, IsAbstract: false } && typeof(IControlMessage).IsAssignableFrom(t));
        Assert.Equal(records.OrderBy(t => t.Name), ControlMessageSerializer.Manifests.Keys.OrderBy(t => t.Name));
        // The wire of protocol version 4: a change here breaks every rank of an older build.
        Assert.Equal(
            "CancelGeneration Challenge CloseRing ClusterStatus CoordinatorRefused FormRing GenerateRequest GenerationCompleted " +
            "GenerationFailed GetClusterStatus Hello LeaveCluster LoadFailed LoadProgress LoadShard MasterLeaving MasterLeavingNoted RankLeaving Register Registered " +
            "RegistrationRefused RingFailed RingReady SamplingSpec ServingStopped ShardLoaded Shutdown ShutdownCluster StartServing TokenGenerated",
            string.Join(' ', ControlMessageSerializer.KnownManifests.Order(StringComparer.Ordinal)));
    }

    [Fact]
    public void Every_sealed_control_record_has_a_sample()
    {
        var sampled = ((IEnumerable<object[]>)Samples()).Select(row => ControlMessageSerializer.Manifests[row[0].GetType()]).ToHashSet();
        Assert.Equal(ControlMessageSerializer.KnownManifests.Order(), sampled.Order());
    }

    [Fact]
    public void An_unknown_manifest_is_rejected_instead_of_resolved_as_a_type()
    {
        var s = new ControlMessageSerializer((ExtendedActorSystem)Sys);
        var e = Assert.Throws<System.Runtime.Serialization.SerializationException>(() =>
            s.FromBinary(Encoding.UTF8.GetBytes("{}"), "System.Diagnostics.Process, System"));
        Assert.Contains("unknown control message manifest 'System.Diagnostics.Process, System'", e.Message);
        Assert.Throws<ArgumentException>(() => s.ToBinary("not a control message"));
    }

    [Fact]
    public void Malformed_bytes_give_a_serialization_error_naming_the_message()
    {
        var s = new ControlMessageSerializer((ExtendedActorSystem)Sys);
        var e = Assert.Throws<System.Runtime.Serialization.SerializationException>(() =>
            s.FromBinary(Encoding.UTF8.GetBytes("{\"rank\": \"x\""), nameof(Hello)));
        Assert.StartsWith("malformed control message 'Hello'", e.Message);
    }
}
