using ActorRing.Transport;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using Xunit.Abstractions;

namespace ActorRing.Actors.Tests;

/// <summary>The RingPeer as a child of the test actor (its parent), with a fake transport.</summary>
public sealed class RingPeerSpecs : TestKit
{
    private static readonly TimeSpan T = TimeSpan.FromSeconds(10); // an upper bound only; the machine may be busy

    public RingPeerSpecs(ITestOutputHelper output) : base(TestConfig.Local, output: output) { }

    [Fact]
    public void Connects_and_hands_the_parent_one_communicator_that_survives_reconnects()
    {
        var ring = new FakeRingConnector(1, 3);
        var coordinator = CreateTestProbe();
        var peer = ChildActorOf(RingPeer.Props(ring));

        peer.Tell(new RingPeer.Connect(1, coordinator.Ref));
        var first = ExpectMsg<RingPeer.Connected>(T);
        Assert.Equal((1, 1, 3), (first.Generation, first.Collectives.Rank, first.Collectives.WorldSize));
        first.Collectives.AllReduceSum(new float[2]);
        Assert.Equal(1, ring.Last.AllReduceCalls);

        peer.Tell(new RingPeer.Close(2, "rank 2 is gone"));
        AwaitCondition(() => ring.Made[0].Disposed, T);
        var closed = Assert.Throws<CollectiveException>(() => first.Collectives.AllReduceSum(new float[2]));
        Assert.Equal("rank 1: the ring is not connected (closed after an error or not formed yet)", closed.Message);

        peer.Tell(new RingPeer.Connect(3, coordinator.Ref));
        var second = ExpectMsg<RingPeer.Connected>(T);
        Assert.Same(first.Collectives, second.Collectives);
        second.Collectives.AllReduceSum(new float[2]);
        Assert.Equal(1, ring.Made[1].AllReduceCalls);
        coordinator.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void A_failed_bootstrap_is_reported_to_parent_and_coordinator_with_the_transport_message()
    {
        var ring = new FakeRingConnector(2, 4) { FailWith = "could not connect to right neighbour 10.0.0.3:12347 within 120 s" };
        var coordinator = CreateTestProbe();
        var peer = ChildActorOf(RingPeer.Props(ring));
        peer.Tell(new RingPeer.Connect(5, coordinator.Ref));
        Assert.Equal(new RingPeer.ConnectFailed(5, "could not connect to right neighbour 10.0.0.3:12347 within 120 s"), ExpectMsg<RingPeer.ConnectFailed>(T));
        Assert.Equal(new RingFailed(2, 5, "could not connect to right neighbour 10.0.0.3:12347 within 120 s"), coordinator.ExpectMsg<RingFailed>(T));
        Assert.Equal(TestActor, coordinator.LastSender); // on behalf of the worker, which is how rank 0 knows ranks
    }

    [Fact]
    public void A_connect_superseded_by_close_does_not_leak_its_sockets()
    {
        var ring = new FakeRingConnector(0, 2) { Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) };
        var peer = ChildActorOf(RingPeer.Props(ring));
        peer.Tell(new RingPeer.Connect(1, CreateTestProbe().Ref));
        peer.Tell(new RingPeer.Close(2, "coordinator lost"));
        ring.Gate.SetResult();
        ExpectNoMsg(TimeSpan.FromMilliseconds(300)); // the cancelled attempt is neither reported nor used
    }

    [Fact]
    public void A_broken_ring_is_closed_and_reported()
    {
        var ring = new FakeRingConnector(0, 2);
        var coordinator = CreateTestProbe();
        var peer = ChildActorOf(RingPeer.Props(ring));
        peer.Tell(new RingPeer.Connect(1, coordinator.Ref));
        ExpectMsg<RingPeer.Connected>(T);
        peer.Tell(new RingPeer.Broken(1, "frame #9 has dtype bf16, expected f32"));
        Assert.Equal(new RingFailed(0, 1, "frame #9 has dtype bf16, expected f32"), coordinator.ExpectMsg<RingFailed>(T));
        ExpectMsg<RingPeer.ConnectFailed>(T);
        Assert.True(ring.Last.Disposed);
        // A report about an older ring generation is stale and ignored.
        peer.Tell(new RingPeer.Broken(0, "old"));
        coordinator.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void Stopping_the_peer_closes_the_sockets()
    {
        var ring = new FakeRingConnector(0, 2);
        var peer = ChildActorOf(RingPeer.Props(ring));
        peer.Tell(new RingPeer.Connect(1, CreateTestProbe().Ref));
        ExpectMsg<RingPeer.Connected>(T);
        Watch(peer);
        Sys.Stop(peer);
        ExpectTerminated(peer, T);
        Assert.True(ring.Last.Disposed);
    }
}
