using ActorRing.Actors.Engine;
using ActorRing.Transport;
using Akka.Actor;
using Akka.Event;

namespace ActorRing.Actors;

/// <summary>
/// Owns this rank's data-plane sockets: forms the ring through the transport (bootstrap and handshake with
/// deadlines), hands its parent the one <see cref="RingCollectives"/> the model calls directly, closes the
/// sockets when told or when stopped, and reports failures to its parent and to the coordinator. It never
/// relays collective traffic: that would cost an actor message per all-reduce.
/// </summary>
public sealed class RingPeer : ReceiveActor
{
    /// <summary>Parent to peer: connect the ring for <paramref name="Generation"/>; failures are also reported
    /// to <paramref name="Coordinator"/>.</summary>
    public sealed record Connect(int Generation, IActorRef Coordinator) : INoSerializationVerificationNeeded;

    /// <summary>Parent to peer: close the sockets.</summary>
    public sealed record Close(int Generation, string Reason) : INoSerializationVerificationNeeded;

    /// <summary>Parent to peer: a collective failed on the compute thread; the ring is unusable.</summary>
    public sealed record Broken(int Generation, string Reason) : INoSerializationVerificationNeeded;

    /// <summary>Peer to parent: the ring is up; <paramref name="Collectives"/> is the same object every time.</summary>
    public sealed record Connected(int Generation, RingCollectives Collectives) : INoSerializationVerificationNeeded;

    public sealed record ConnectFailed(int Generation, string Reason) : INoSerializationVerificationNeeded;

    private sealed record ConnectResult(int Generation, ICollectives? Connection, Exception? Error) : INoSerializationVerificationNeeded;

    private readonly IRingConnector _connector;
    private readonly RingCollectives _collectives;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private CancellationTokenSource? _connecting;
    private int _generation = -1;
    private IActorRef _coordinator = ActorRefs.Nobody;

    public RingPeer(IRingConnector connector)
    {
        _connector = connector;
        _collectives = new RingCollectives(connector.Rank, connector.WorldSize);

        Receive<Connect>(c =>
        {
            CloseCurrent();
            _generation = c.Generation;
            _coordinator = c.Coordinator;
            _connecting = new CancellationTokenSource();
            _log.Info("rank {0}: forming the ring (generation {1})", _connector.Rank, c.Generation);
            int generation = c.Generation;
            // The transport applies its own connect/accept/handshake deadlines; the task always completes.
            _connector.ConnectAsync(_connecting.Token).PipeTo(Self,
                success: conn => new ConnectResult(generation, conn, null),
                failure: e => new ConnectResult(generation, null, e));
        });
        Receive<ConnectResult>(r =>
        {
            if (r.Generation != _generation || _connecting is null)
            {
                r.Connection?.Dispose(); // an abandoned attempt finished late: do not leak its sockets
                return;
            }
            _connecting.Dispose();
            _connecting = null;
            if (r.Connection is not null)
            {
                _collectives.Attach(r.Connection);
                _log.Info("rank {0}: ring connected (generation {1})", _connector.Rank, r.Generation);
                Context.Parent.Tell(new Connected(r.Generation, _collectives));
                return;
            }
            var reason = Describe(r.Error!);
            _log.Error("rank {0}: ring formation failed: {1}", _connector.Rank, reason);
            Report(r.Generation, reason);
        });
        Receive<Broken>(b =>
        {
            if (b.Generation != _generation) return;
            _log.Error("rank {0}: ring broken: {1}", _connector.Rank, b.Reason);
            CloseCurrent();
            Report(b.Generation, b.Reason);
        });
        Receive<Close>(c =>
        {
            _log.Info("rank {0}: closing the ring: {1}", _connector.Rank, c.Reason);
            _generation = c.Generation;
            CloseCurrent();
        });
    }

    public static Props Props(IRingConnector connector) => Akka.Actor.Props.Create(() => new RingPeer(connector));

    private void Report(int generation, string reason)
    {
        Context.Parent.Tell(new ConnectFailed(generation, reason));
        // Sent on behalf of the worker: the coordinator knows ranks by their worker's reference.
        _coordinator.Tell(new RingFailed(_connector.Rank, generation, reason), Context.Parent);
    }

    private void CloseCurrent()
    {
        if (_connecting is not null)
        {
            _connecting.Cancel();
            _connecting.Dispose();
            _connecting = null;
        }
        // Disposing closes the sockets: neighbours see the error within their deadline, and a collective
        // blocked on our compute thread fails at once.
        _collectives.Detach()?.Dispose();
    }

    private static string Describe(Exception e) => e switch
    {
        AggregateException { InnerExceptions.Count: 1 } a => Describe(a.InnerExceptions[0]),
        OperationCanceledException => "cancelled",
        _ => e.Message,
    };

    protected override void PostStop()
    {
        CloseCurrent();
        base.PostStop();
    }
}
