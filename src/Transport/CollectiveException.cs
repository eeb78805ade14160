namespace ActorRing.Transport;

/// <summary>
/// A collective could not complete: a neighbour died, timed out, or sent a frame that does not match the
/// operation (sequence number, dtype or length). The message names the peer and the operation.
/// </summary>
public class CollectiveException : Exception
{
    public CollectiveException(string message, Exception? inner = null) : base(message, inner) { }
}
