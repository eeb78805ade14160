using ActorRing.Actors.Engine;
using Akka.Actor;
using Akka.Configuration;
using Akka.Hosting;
using Akka.Remote.Hosting;

namespace ActorRing.Actors.Hosting;

/// <summary>Registry keys for the actors a rank runs (resolve with <c>ActorRegistry.Get&lt;T&gt;()</c>).</summary>
public sealed class CoordinatorActor;

public sealed class ShardWorkerActor;

/// <summary>Where this rank's actor system listens and how peers address it.</summary>
/// <param name="BindHost">Interface to listen on (0.0.0.0 = all).</param>
/// <param name="Port">Listen port; 0 picks a free one (workers need no fixed port).</param>
/// <param name="PublicHost">Address peers use in actor paths; must be what they dial.</param>
/// <param name="PublicPort">Port peers dial, when it differs from <paramref name="Port"/> (a
/// <see cref="ControlPortGuard"/> listens there and forwards to Akka's own port).</param>
public sealed record RemoteEndpoint(string BindHost, int Port, string PublicHost, int? PublicPort = null);

/// <summary>Everything one rank needs to start its actors.</summary>
public sealed record RankActorsOptions(
    ShardWorkerSettings Worker,
    IShardEngineFactory Engines,
    IRingConnector Ring,
    CoordinatorSettings? Coordinator,
    ITokenPickerFactory? Pickers,
    Serving.SchedulerOptions? Scheduling = null,
    Serving.IStopRuleFactory? StopRules = null,
    Serving.ServingPort? Port = null);

/// <summary>
/// Akka.Hosting wiring, one extension per concern, so the host composes exactly what a rank needs and tests
/// can reuse the same HOCON and serializer binding.
/// </summary>
public static class ActorRingAkkaExtensions
{
    public const string HoconFileName = "actorring.hocon";

    /// <summary>The shipped HOCON (remote transport, dispatchers, serializer binding). A copy in
    /// <c>hocon/actorring.hocon</c> next to the executable wins, so operators can tune it without rebuilding.</summary>
    public static Config LoadHocon()
    {
        var file = Path.Combine(AppContext.BaseDirectory, "hocon", HoconFileName);
        if (File.Exists(file)) return ConfigurationFactory.ParseString(File.ReadAllText(file));
        using var stream = typeof(ActorRingAkkaExtensions).Assembly.GetManifestResourceStream("ActorRing.Actors." + HoconFileName)
            ?? throw new InvalidOperationException($"embedded {HoconFileName} is missing from {typeof(ActorRingAkkaExtensions).Assembly.GetName().Name}");
        using var reader = new StreamReader(stream);
        return ConfigurationFactory.ParseString(reader.ReadToEnd());
    }

    /// <summary>Akka's maximum-frame-size from the HOCON in effect: the largest control message a rank accepts.</summary>
    public static int MaximumFrameSize() =>
        (int)(LoadHocon().GetByteSize("akka.remote.dot-netty.tcp.maximum-frame-size") ?? 128 * 1024);

    public static AkkaConfigurationBuilder AddActorRingHocon(this AkkaConfigurationBuilder builder) =>
        builder.AddHocon(LoadHocon(), HoconAddMode.Prepend);

    /// <summary>Routes Akka's log through Microsoft.Extensions.Logging (<see cref="ActorRingLogger"/>), so one log
    /// stream (and systemd's journal) carries both.</summary>
    /// <param name="level">Akka's own threshold; it also governs the few lines Akka prints after the bridge
    /// has stopped during shutdown, so quiet ranks stay quiet to the end.</param>
    public static AkkaConfigurationBuilder AddActorRingLogging(this AkkaConfigurationBuilder builder,
        Microsoft.Extensions.Logging.ILoggerFactory loggerFactory, Akka.Event.LogLevel level = Akka.Event.LogLevel.InfoLevel) =>
        builder
            .AddSetup(new ActorRingLoggingSetup(loggerFactory))
            .ConfigureLoggers(loggers =>
            {
                loggers.LogLevel = level;
                loggers.ClearLoggers();
                loggers.AddLogger<ActorRingLogger>();
            });

    /// <summary>Akka.Remote at <paramref name="endpoint"/>, with <see cref="RejoinableRemoteProvider"/> as the provider
    /// (chosen through the bootstrap setup, which wins over HOCON; WithRemoting keeps a custom provider).</summary>
    /// <param name="tls">When set, Akka.Remote speaks TLS with the cluster's certificate on every connection (its
    /// addresses then use the <see cref="TlsProtocol"/> scheme); <paramref name="refused"/> hears of peers it refuses.</param>
    public static AkkaConfigurationBuilder AddActorRingRemoting(this AkkaConfigurationBuilder builder, RemoteEndpoint endpoint,
        Security.ControlPlaneTls? tls = null, Action<string>? refused = null)
    {
        if (tls is not null)
        {
            builder.AddHocon("akka.remote.dot-netty.tcp.enable-ssl = on", HoconAddMode.Prepend)
                .AddSetup(tls.AkkaSetup(refused ?? (_ => { })));
        }
        return builder
            .WithActorRefProvider(new ProviderSelection.Custom(
                $"{typeof(RejoinableRemoteProvider).FullName}, {typeof(RejoinableRemoteProvider).Assembly.GetName().Name}"))
            .WithRemoting(new RemoteOptions
            {
                HostName = endpoint.BindHost,
                Port = endpoint.Port,
                PublicHostName = endpoint.PublicHost,
                PublicPort = endpoint.PublicPort,
            });
    }

    /// <summary>Starts this rank's worker and, on rank 0, the coordinator (first, so the local worker finds it).</summary>
    public static AkkaConfigurationBuilder AddActorRingRank(this AkkaConfigurationBuilder builder, RankActorsOptions options) =>
        builder.WithActors((system, registry) =>
        {
            RankServing? serving = null;
            if (options.Coordinator is not null)
            {
                var pickers = options.Pickers ?? throw new InvalidOperationException("rank 0 needs a token picker factory");
                // The queue between the coordinator's request side and the step loop on rank 0's compute thread.
                serving = new RankServing(options.Port ?? new Serving.ServingPort(), options.Scheduling ?? new Serving.SchedulerOptions());
                var coordinator = system.ActorOf(
                    Coordinator.Props(options.Coordinator, pickers, serving.Port, options.StopRules).WithDispatcher("akka.actor.actorring-coordinator-dispatcher"),
                    ControlProtocol.CoordinatorName);
                registry.Register<CoordinatorActor>(coordinator);
            }
            var worker = system.ActorOf(
                ShardWorker.Props(options.Worker, options.Engines, RingPeer.Props(options.Ring), serving),
                $"worker-{options.Worker.Rank}");
            registry.Register<ShardWorkerActor>(worker);
        });

    /// <summary>Akka's address scheme with TLS on (DotNetty names its transport "ssl.tcp" then).</summary>
    public const string TlsProtocol = "akka.ssl.tcp";

    /// <summary>The coordinator's path as a worker dials it.</summary>
    public static string CoordinatorPath(string host, int port, bool tls = false) =>
        $"{(tls ? TlsProtocol : "akka.tcp")}://{ControlProtocol.SystemName}@{host}:{port}/user/{ControlProtocol.CoordinatorName}";
}
