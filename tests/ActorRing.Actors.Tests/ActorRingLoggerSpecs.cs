using System.Collections.Concurrent;
using ActorRing.Actors.Hosting;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Configuration;
using Akka.Event;
using Microsoft.Extensions.Logging;

namespace ActorRing.Actors.Tests;

public sealed class ActorRingLoggerSpecs
{
    private sealed class Capture : ILoggerProvider, ILogger
    {
        public ConcurrentQueue<(string Category, Microsoft.Extensions.Logging.LogLevel Level, string Text, Exception? Error)> Entries { get; } = new();
        private string _category = "";

        public ILogger CreateLogger(string categoryName) => new Capture { _category = categoryName, Shared = this };
        private Capture? Shared { get; init; }
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            (Shared ?? this).Entries.Enqueue((_category, logLevel, formatter(state, exception), exception));

        public void Dispose() { }
    }

    private sealed class Chatty : ReceiveActor
    {
        public Chatty()
        {
            var log = Context.GetLogger();
            Receive<string>(s => log.Warning("rank {0} says {1}", 1, s));
            Receive<int>(_ => log.Error(new InvalidOperationException("boom"), "failed"));
            Receive<Exception>(e => log.Error(e, "Disassociated"));
        }
    }

    /// <summary>An actor system whose only Akka logger is <see cref="ActorRingLogger"/>, writing to <paramref name="factory"/>.</summary>
    private static ActorSystem SystemLoggingTo(ILoggerFactory factory)
    {
        var config = ConfigurationFactory.ParseString("""akka.loggers = ["ActorRing.Actors.Hosting.ActorRingLogger, ActorRing.Actors"]""");
        return ActorSystem.Create("log-test",
            ActorSystemSetup.Create(BootstrapSetup.Create().WithConfig(config), new ActorRingLoggingSetup(factory)));
    }

    [Fact]
    public async Task Akka_events_become_plain_entries_under_the_logging_class()
    {
        var capture = new Capture();
        using var factory = LoggerFactory.Create(b => b.AddProvider(capture).SetMinimumLevel(Microsoft.Extensions.Logging.LogLevel.Trace));
        using var system = SystemLoggingTo(factory);
        var actor = system.ActorOf(Props.Create(() => new Chatty()));
        actor.Tell("hello");
        actor.Tell(1);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (capture.Entries.Count(e => e.Category.EndsWith("Chatty", StringComparison.Ordinal)) < 2 && DateTime.UtcNow < deadline)
            await Task.Delay(50);

        var mine = capture.Entries.Where(e => e.Category == typeof(Chatty).FullName).ToList();
        Assert.Equal(2, mine.Count);
        Assert.Equal((Microsoft.Extensions.Logging.LogLevel.Warning, "rank 1 says hello"), (mine[0].Level, mine[0].Text));
        Assert.Equal((Microsoft.Extensions.Logging.LogLevel.Error, "failed"), (mine[1].Level, mine[1].Text));
        Assert.Equal("boom", mine[1].Error?.Message);
        await system.Terminate();
    }

    [Fact]
    public async Task A_peer_disassociating_is_a_warning_not_an_error()
    {
        // Akka's endpoint supervisor logs this as an error whenever a peer's connection closes, even in an ordered
        // shutdown; the coordinator reports lost ranks itself.
        var capture = new Capture();
        using var factory = LoggerFactory.Create(b => b.AddProvider(capture).SetMinimumLevel(Microsoft.Extensions.Logging.LogLevel.Trace));
        using var system = SystemLoggingTo(factory);
        var type = typeof(Akka.Remote.RemoteSettings).Assembly.GetType("Akka.Remote.EndpointDisassociatedException", throwOnError: true)!;
        var disassociated = (Exception)Activator.CreateInstance(type,
            System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic,
            null, ["Disassociated"], null)!;
        system.ActorOf(Props.Create(() => new Chatty())).Tell(disassociated);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!capture.Entries.Any(e => e.Category == typeof(Chatty).FullName) && DateTime.UtcNow < deadline) await Task.Delay(50);

        var entry = Assert.Single(capture.Entries, e => e.Category == typeof(Chatty).FullName);
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, entry.Level);
        Assert.Same(disassociated, entry.Error);
        await system.Terminate();
    }
}
