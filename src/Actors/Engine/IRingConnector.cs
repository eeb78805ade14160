using ActorRing.Transport;

namespace ActorRing.Actors.Engine;

/// <summary>Forms this rank's data-plane ring: listen for the left neighbour, dial the right one, handshake.
/// The returned communicator is owned by the caller (the <see cref="RingPeer"/>), which disposes it to close
/// the sockets.</summary>
public interface IRingConnector
{
    int Rank { get; }
    int WorldSize { get; }

    /// <summary>Completes when both neighbours are connected and authenticated, or fails within the
    /// transport's deadline with a message that names the peer.</summary>
    Task<ICollectives> ConnectAsync(CancellationToken cancellationToken);
}
