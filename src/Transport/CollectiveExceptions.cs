namespace ActorRing.Transport;

/// <summary>A neighbour sent nothing (or accepted nothing) within the operation deadline.</summary>
public sealed class CollectivePeerTimeoutException(string message, Exception? inner = null) : CollectiveException(message, inner);

/// <summary>A neighbour closed or reset its connection.</summary>
public sealed class CollectivePeerClosedException(string message, Exception? inner = null) : CollectiveException(message, inner);

/// <summary>A frame did not match the operation (sequence number, operation, dtype, index or length).</summary>
public sealed class CollectiveDesyncException(string message) : CollectiveException(message);

/// <summary>The ring could not be formed (connect/accept deadline, handshake refused, port in use).</summary>
public sealed class RingFormationException(string message, Exception? inner = null) : CollectiveException(message, inner);
