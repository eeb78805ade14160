namespace ActorRing.Transport;

/// <summary>
/// A ring configuration a user must fix. The message names the file (or the RING_CONFIG variable), the field
/// and the offending value, and says what is expected, so it can be printed without a stack trace.
/// </summary>
public sealed class RingConfigException : Exception
{
    public RingConfigException(string source, string? field, string message, Exception? inner = null)
        : base(field is null ? $"{source}: {message}" : $"{source}: field '{field}': {message}", inner)
    {
        Source = source;
        Field = field;
    }

    /// <summary>The file path, or a description such as "RING_CONFIG environment variable".</summary>
    public new string Source { get; }

    /// <summary>The JSON field at fault, or null when the whole file is at fault.</summary>
    public string? Field { get; }
}
