using ActorRing.Model;
using ActorRing.Model.Tokenization;
using ActorRing.Transport;

namespace ActorRing.Host.Cli;

/// <summary>A command line the user can fix: the message names the option, the value and what is expected.</summary>
public sealed class UsageException(string message) : Exception(message)
{
    /// <summary>Runs <paramref name="f"/>, turning the model's, tokenizer's and ring's user errors into usage
    /// errors: a message, not a stack trace.</summary>
    public static T FromUserErrors<T>(Func<T> f)
    {
        try
        {
            return f();
        }
        catch (ModelLoadException e)
        {
            throw new UsageException(e.Message);
        }
        catch (TokenizerFormatException e)
        {
            throw new UsageException(e.Message);
        }
        catch (CollectiveException e)
        {
            throw new UsageException($"the ring failed: {e.Message}");
        }
    }
}
