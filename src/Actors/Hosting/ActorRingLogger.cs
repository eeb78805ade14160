using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Dispatch;
using Akka.Event;
using Microsoft.Extensions.Logging;
using LogLevel = Microsoft.Extensions.Logging.LogLevel;

namespace ActorRing.Actors.Hosting;

/// <summary>Carries the host's <see cref="ILoggerFactory"/> into the actor system for <see cref="ActorRingLogger"/>.</summary>
public sealed class ActorRingLoggingSetup(ILoggerFactory loggerFactory) : Setup
{
    public ILoggerFactory LoggerFactory { get; } = loggerFactory;
}

/// <summary>
/// Akka's log sink: each event becomes one Microsoft.Extensions.Logging entry under the logging class's name
/// (e.g. <c>ActorRing.Actors.Coordinator</c>), with just the message. Akka's own "[INFO][time][thread][path]"
/// prefix would repeat what the host's formatter already prints.
/// </summary>
public sealed class ActorRingLogger : ReceiveActor, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    /// <summary>The text with stack frames ("   at …", "--- End of …") removed and its lines joined.</summary>
    internal static string WithoutStackTrace(string text)
    {
        if (!text.Contains(" at ", StringComparison.Ordinal)) return text;
        var kept = text.Split('\n')
            .Select(line => line.TrimEnd('\r'))
            .Where(line => !line.TrimStart().StartsWith("at ", StringComparison.Ordinal) && !line.TrimStart().StartsWith("--- End of", StringComparison.Ordinal));
        return string.Join(" ", kept).Trim();
    }

    public ActorRingLogger()
    {
        var factory = Context.System.Settings.Setup.Get<ActorRingLoggingSetup>().Value?.LoggerFactory
                      ?? throw new InvalidOperationException("ActorRingLogger needs an ActorRingLoggingSetup (use AddActorRingLogging)");
        Receive<InitializeLogger>(_ => Sender.Tell(new LoggerInitialized()));
        Receive<LogEvent>(e =>
        {
            // Akka's internals that log under a plain string source report a placeholder class; call them "Akka".
            var category = e.LogClass is null || e.LogClass.Name == "DummyClassForStringSources" ? "Akka" : e.LogClass.FullName ?? "Akka";
            var logger = factory.CreateLogger(category);
            var level = e.LogLevel() switch
            {
                Akka.Event.LogLevel.DebugLevel => LogLevel.Debug,
                Akka.Event.LogLevel.InfoLevel => LogLevel.Information,
                Akka.Event.LogLevel.WarningLevel => LogLevel.Warning,
                _ => LogLevel.Error,
            };
            var cause = (e as Error)?.Cause;
            // A peer's connection closing makes Akka's endpoint supervisor log an error, even when the peer left
            // in an ordered shutdown. The coordinator reports a lost rank itself, naming it, so here it is a
            // warning (which the host hides during an ordered shutdown).
            // (The exception type is internal to Akka.Remote, hence the name.)
            if (cause?.GetType().FullName == "Akka.Remote.EndpointDisassociatedException") level = LogLevel.Warning;
            if (!logger.IsEnabled(level)) return;
            var message = e.Message?.ToString() ?? "";
            // Akka's remoting reports every broken or hostile connection with a stack trace, in the message or as
            // the cause; a stranger's bytes must not fill the terminal with them. One line each, with the
            // exception's type and message; the traces only at debug level, where they help.
            if (category.StartsWith("Akka", StringComparison.Ordinal) && !logger.IsEnabled(LogLevel.Debug))
            {
                message = WithoutStackTrace(message);
                if (cause is not null) message += $" ({cause.GetType().Name}: {WithoutStackTrace(cause.Message)})";
                cause = null;
            }
            logger.Log(level, cause, "{Message}", message);
        });
    }
}
