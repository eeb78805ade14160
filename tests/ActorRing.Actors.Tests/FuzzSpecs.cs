using System.Diagnostics;
using System.Runtime.Serialization;
using ActorRing.Actors.Hosting;
using ActorRing.Actors.Serialization;
using Akka.Actor;
using Akka.TestKit.Xunit2;

namespace ActorRing.Actors.Tests;

/// <summary>Random and mutated control-plane input, bounded in time: only the typed errors may escape.</summary>
public sealed class FuzzSpecs : TestKit
{
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(2);

    public FuzzSpecs() : base(TestConfig.Local) { }

    [Fact]
    public void The_control_message_serializer_rejects_garbage_with_a_serialization_error_only()
    {
        var s = new ControlMessageSerializer((ExtendedActorSystem)Sys);
        var rng = new Random(99);
        var seeds = SerializerSpecs.Samples().Cast<object[]>().Select(row => row[0]).Select(m => (Bytes: s.ToBinary(m), Manifest: s.Manifest(m))).ToArray();
        string[] manifests = [.. ControlMessageSerializer.KnownManifests, "System.Diagnostics.Process, System", "", "Hello\0"];
        int runs = 0, decoded = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Budget || runs < 5_000)
        {
            var seed = seeds[rng.Next(seeds.Length)];
            byte[] input;
            string manifest = rng.Next(5) == 0 ? manifests[rng.Next(manifests.Length)] : seed.Manifest;
            if (rng.Next(3) == 0)
            {
                input = new byte[rng.Next(0, 64)];
                rng.NextBytes(input);
            }
            else
            {
                input = (byte[])seed.Bytes.Clone();
                for (int flips = rng.Next(1, 4); flips > 0 && input.Length > 0; flips--) input[rng.Next(input.Length)] = (byte)rng.Next(256);
                if (rng.Next(4) == 0) input = input[..rng.Next(input.Length + 1)];
            }
            try
            {
                var message = s.FromBinary(input, manifest);
                Assert.IsAssignableFrom<IControlMessage>(message);
                decoded++;
            }
            catch (SerializationException)
            {
                // The one error the serializer may raise on bad input.
            }
            runs++;
        }
        Assert.True(decoded < runs, "every input decoded: the mutations did nothing");
    }

    [Fact]
    public void The_guard_reads_an_origin_from_any_bytes_without_throwing()
    {
        var rng = new Random(7);
        int runs = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Budget || runs < 20_000)
        {
            var input = new byte[rng.Next(0, 128)];
            rng.NextBytes(input);
            if (input.Length > 0 && rng.Next(2) == 0) input[0] = 0x12; // field 2, length-delimited: go deeper
            var origin = AkkaHandshake.Origin(input);
            if (origin is { } o) Assert.InRange(o.Port, 1, 65535);
            runs++;
        }
    }
}
