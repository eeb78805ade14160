namespace ActorRing.Model;

/// <summary>
/// A model directory, config or checkpoint that this build cannot use, or a request that does not fit the
/// loaded model (e.g. a prompt longer than the context). The message names the field, the value and the
/// fix, so hosts print it as a user error rather than a stack trace.
/// </summary>
public class ModelLoadException : Exception
{
    public ModelLoadException(string message, Exception? inner = null) : base(message, inner) { }
}
