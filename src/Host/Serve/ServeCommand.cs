using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using ActorRing.Actors;
using ActorRing.Actors.Client;
using ActorRing.Actors.Engine;
using ActorRing.Actors.Hosting;
using ActorRing.Actors.Security;
using ActorRing.Host.Cli;
using ActorRing.Host.Engine;
using ActorRing.Host.Generation;
using ActorRing.Host.Http;
using ActorRing.Model;
using ActorRing.Model.Tokenization;
using ActorRing.Templating;
using ActorRing.Transport;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace ActorRing.Host.Serve;

/// <summary>
/// <c>actorring serve</c>: one rank of the cluster as a .NET Generic Host service. Every rank runs a
/// ShardWorker (with its RingPeer); rank 0 also hosts the Coordinator at master_ip:master_port, where the
/// workers dial it. Logs go to stderr through Microsoft.Extensions.Logging (stdout carries completions only),
/// Ctrl-C / SIGTERM stop it cleanly, and under systemd it reports readiness and logs to the journal.
/// </summary>
public static class ServeCommand
{
    /// <summary>
    /// Set while this rank's Akka remoting is expected to report unreachable peers: while a worker dials a
    /// coordinator that may not be up yet (it logs its own "dialing" line), and after the coordinator has shut
    /// the cluster down (rank 0 exits at once). See the log filter in Build.
    /// </summary>
    private static bool _peerLossExpected;

    private const string Notes = """
        The ring file comes from --ring-config or RING_CONFIG (mistral.rs format). Every rank needs the same
        ACTORRING_SECRET, at least 16 bytes (make one with 'actorring secret'). Rank 0 hosts the coordinator at
        master_ip:master_port; start the ranks in any order. Rank 0 serves the OpenAI-compatible HTTP API at
        --http-host:--http-port (see README "HTTP API"). --interactive (rank 0) reads prompts from the terminal
        or, on a pipe, one prompt per line and writes one completion per line (newlines escaped as \n); /reset
        clears the conversation, /exit quits. --cores pins the rank to those CPU cores; use it when several ranks
        share a machine (generate --world-size N does this itself when the ranks' threads fit the cores).
        --tls-cert FILE.pfx (every rank the same file; password from --tls-cert-password or ACTORRING_TLS_PASSWORD)
        encrypts the control plane with mutual TLS pinned to that certificate (README "TLS on the control plane").
        If a rank is lost mid-request, the requests in flight wait up to --recovery-timeout (default 30 s) for it to
        come back (restart it with the same command) and then continue with the same output; otherwise they fail
        naming the rank. See docs/running.md.
        """;

    public static Command Create()
    {
        var definitions = new ServeOptions.Definitions();
        var command = new VerbCommand(ServeOptions.Verb, "Run one rank of a cluster; rank 0 serves the OpenAI-compatible HTTP API", Notes);
        definitions.AddTo(command);
        command.SetAction((result, _) => RunAsync(ServeOptions.From(definitions, result)));
        return command;
    }

    public static async Task<int> RunAsync(ServeOptions options)
    {
        // --cores: the whole process stays on this rank's cores (runtime threads too), and the compute
        // thread and its helpers each get one of them when the model loads (see CorePinning).
        if (options.Load.Cores is { Length: > 0 } cores) CorePinning.ConfineProcess(cores);
        // A rank started by `generate --world-size N` exits when that parent dies, even by SIGKILL.
        RankProcessLauncher.ExitWhenParentDies();
        // stdout carries completions only. Libraries (Akka's shutdown messages) may still print to Console.Out,
        // so the process's Console.Out goes to stderr and completions use the real stdout through ServeExit.Out.
        var stdout = new StreamWriter(Console.OpenStandardOutput(), new System.Text.UTF8Encoding(false)) { AutoFlush = false };
        Console.SetOut(Console.Error);
        if (!TryPrepare(options, out var rank, out int failure)) return failure;
        using var host = Build(options, rank!, stdout);
        var exit = host.Services.GetRequiredService<ServeExit>(); // RunAsync disposes the container
        try
        {
            await host.RunAsync();
        }
        catch (IOException e) when (e.Message.StartsWith("Failed to bind", StringComparison.Ordinal))
        {
            // Kestrel could not listen (a host name whose address is taken, or a race with another process).
            Console.Error.WriteLine($"error: {e.Message} Pick another address or port with --http-host/--http-port");
            return 2;
        }
        stdout.Flush();
        return exit.Code;
    }

    /// <summary>Everything about this rank that is validated before anything starts.</summary>
    internal sealed record RankSetup(
        RingConfig Ring, byte[] Secret, ShardedLlamaEngineFactory Engines, ITextTokenizer? Tokenizer, IChatTemplate ChatTemplate,
        ControlPlaneTls? Tls = null);

    internal static bool TryPrepare(ServeOptions options, out RankSetup? setup, out int exitCode)
    {
        setup = null;
        exitCode = 2;
        RingConfig ring;
        try
        {
            ring = RingConfig.LoadFromEnvironment(options.RingConfigPath);
        }
        catch (RingConfigException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return false;
        }
        foreach (var warning in ring.Warnings) Console.Error.WriteLine($"warning: {warning}");

        if ((options.Interactive || options.OneShot) && ring.Rank != 0)
        {
            Console.Error.WriteLine($"error: --interactive and --prompt run on rank 0, but {ring.SourcePath} is rank {ring.Rank}; drop the option on this machine");
            return false;
        }
        var secret = RingOptions.SecretFromEnvironment();
        if (secret.Length == 0)
        {
            if (ring.WorldSize > 1)
            {
                Console.Error.WriteLine($"error: {RingOptions.SecretEnvironmentVariable} is not set; every rank of a world_size {ring.WorldSize} ring needs the same secret (for example: export {RingOptions.SecretEnvironmentVariable}=$(openssl rand -hex 32) on one machine, and the same value on the others)");
                return false;
            }
            secret = RandomNumberGenerator.GetBytes(32); // a single rank has nobody to prove it to
        }
        else if (!options.InsecureShortSecret && ClusterSecret.TooShort(secret, RingOptions.SecretEnvironmentVariable) is { } tooShort)
        {
            Console.Error.WriteLine($"error: {tooShort}");
            return false;
        }
        if (ring.WorldSize > 1)
        {
            try
            {
                ring.RequireMaster();
            }
            catch (RingConfigException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return false;
            }
        }
        ControlPlaneTls? tls = null;
        if (options.TlsCertificatePath is { } certificatePath)
        {
            try
            {
                tls = ControlPlaneTls.Load(certificatePath, options.TlsCertificatePassword);
            }
            catch (ControlPlaneTlsException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return false;
            }
        }

        // Both listeners set SO_REUSEADDR, which on Linux (.NET sets SO_REUSEPORT with it) lets a second process
        // listen on the same port and steal connections. A second rank with the same ring file must fail instead.
        if (PortInUse(options.BindAddress, ring.Port) is { } ringError)
        {
            Console.Error.WriteLine($"error: port {ring.Port} (field 'port' of {ring.SourcePath}) is already in use on this machine: {ringError}; is this rank already running? Stop it or change the port");
            return false;
        }
        if (ring.Rank == 0 && ring.MasterPort is int masterPort && PortInUse(options.BindAddress, masterPort) is { } masterError)
        {
            Console.Error.WriteLine($"error: master_port {masterPort} (from {ring.SourcePath}) is already in use on this machine: {masterError}; is another rank 0 running? Stop it or change master_port in every ring file");
            return false;
        }

        if (ring.Rank == 0 && options.Http && options.HttpPort != 0 && IPAddress.TryParse(options.HttpHost, out var httpAddress)
            && PortInUse(httpAddress, options.HttpPort) is { } httpError)
        {
            Console.Error.WriteLine($"error: --http-port {options.HttpPort} is already in use on {options.HttpHost}: {httpError}; is another server running? Stop it or pick another port with --http-port (0 picks a free one)");
            return false;
        }

        try
        {
            if (options.Preset is { } preset)
            {
                var presetConfig = Bench.DecodeBench.Preset(preset);
                var presetLoad = options.LoadFor(options.Load.ContextFor(presetConfig));
                var random = ShardedLlamaEngineFactory.Random(presetConfig, seed: 42, presetLoad);
                setup = new RankSetup(ring, secret, random, Tokenizer: null, new PlainChatTemplate(), tls);
                return true;
            }
            var model = ModelDirectory.Recognise(options.ModelDir);
            var config = model.ReadConfig();
            var load = options.LoadFor(options.Load.ContextFor(config));
            var engines = new ShardedLlamaEngineFactory(options.ModelDir, load);
            var tokenizer = ring.Rank == 0 ? TokenizerLoader.Load(model.TokenizerFile ?? model.Path) : null;
            // Only rank 0 renders prompts; a broken template is found before any network activity.
            var template = ring.Rank == 0 ? Generation.ModelChatTemplate.Load(model, options.ChatTemplatePath) : new PlainChatTemplate();
            setup = new RankSetup(ring, secret, engines, tokenizer, template, tls);
            return true;
        }
        catch (Exception e) when (e is ModelLoadException or TokenizerFormatException or IOException or UsageException or ChatTemplateException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return false;
        }
    }

    internal static IHost Build(ServeOptions options, RankSetup setup, TextWriter stdout)
    {
        var ring = setup.Ring;
        bool http = ring.Rank == 0 && options.Http;
        // Rank 0 of a server is a web application (Kestrel in the same host); every other rank a plain host.
        IHostApplicationBuilder builder = http
            ? WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] })
            : Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
        builder.Services.AddSystemd();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(15));
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss ";
        });
        builder.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        // The chat prompt shares the terminal with the log, so interactive mode shows only problems by default.
        var level = options.Verbose ? LogLevel.Debug : options.Interactive || options.OneShot || options.Quiet ? LogLevel.Warning : LogLevel.Information;
        builder.Logging.SetMinimumLevel(level);
        // Akka's warnings about an unreachable or disassociated peer are expected while dialing and after an
        // ordered shutdown, so below error level they are not shown then (_peerLossExpected). A filter rule
        // replaces the minimum-level rule, so it applies the level itself.
        builder.Logging.AddFilter((category, logLevel) => logLevel >= level &&
            !(Volatile.Read(ref _peerLossExpected) && logLevel < LogLevel.Error && category?.StartsWith("Akka", StringComparison.Ordinal) == true));
        // Kestrel's per-request lines would drown the cluster's log; its warnings and errors still show.
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Services.AddSingleton(new ServeExit { Out = stdout });

        var ringOptions = new RingOptions
        {
            ClusterSecret = setup.Secret,
            BindAddress = options.BindAddress,
            // Helper threads count towards the cores the automatic socket spin needs (see SpinBeforeSleep).
            BusyThreadsOnThisMachine = (RingConfig.IsThisMachine(ring.RightIp) ? ring.WorldSize : 1) * (options.Load.Threads ?? 1),
        };
        var (endpoint, coordinatorPath) = Endpoints(options, ring, setup.Tls is not null);
        // Akka.Remote cannot cap unauthenticated connections, so it listens on loopback behind our guard, which
        // takes the control port itself (see ControlPortGuard). A single rank without a master has no peers.
        RejoinableRemoteProvider? provider = null;
        bool guarded = !(ring.WorldSize == 1 && ring.MasterPort is null);
        if (guarded)
        {
            builder.Services.AddSingleton(sp => ControlPortGuard.Bind(
                new IPEndPoint(options.BindAddress, endpoint.Port),
                new IPEndPoint(IPAddress.Loopback, FreeLoopbackPort()),
                (system, host, port) => Volatile.Read(ref provider)?.IsWatched(system, host, port) == true,
                new ControlPortGuardOptions(MaxFrame: ActorRingAkkaExtensions.MaximumFrameSize(), Tls: setup.Tls),
                sp.GetRequiredService<ILoggerFactory>().CreateLogger("ActorRing.ControlPort")));
        }

        builder.Services.AddAkka(ControlProtocol.SystemName, (akka, sp) =>
        {
            var lifetime = sp.GetRequiredService<IHostApplicationLifetime>();
            var loggers = sp.GetRequiredService<ILoggerFactory>();
            var worker = new ShardWorkerSettings(ring.Rank, ring.WorldSize, setup.Secret, coordinatorPath,
                TimeSpan.FromSeconds(1), _ =>
                {
                    Volatile.Write(ref _peerLossExpected, true);
                    lifetime.StopApplication();
                }, dialing => Volatile.Write(ref _peerLossExpected, dialing),
                OnRefused: _ =>
                {
                    // A start-up error (the worker logged why): exit like any other configuration error.
                    sp.GetRequiredService<ServeExit>().Code = 2;
                    lifetime.StopApplication();
                });
            CoordinatorSettings? coordinator = null;
            if (ring.Rank == 0)
            {
                coordinator = CoordinatorSettings.Create(ring.WorldSize, setup.Secret, setup.Engines.ModelFingerprint) with
                {
                    // Longer than the transport's own deadlines, so its precise error (naming the peer) wins.
                    StepTimeout = ringOptions.OperationTimeout + TimeSpan.FromSeconds(30),
                    RingTimeout = ringOptions.ConnectTimeout + TimeSpan.FromSeconds(30),
                    RecoveryTimeout = options.RecoveryTimeout,
                    WarmUp = true,
                };
            }
            akka.AddActorRingHocon()
                .AddActorRingLogging(loggers, level switch
                {
                    LogLevel.Debug => Akka.Event.LogLevel.DebugLevel,
                    LogLevel.Information => Akka.Event.LogLevel.InfoLevel,
                    _ => Akka.Event.LogLevel.WarningLevel,
                })
                .AddActorRingRemoting(guarded && sp.GetRequiredService<ControlPortGuard>() is var guard
                    ? new RemoteEndpoint("127.0.0.1", guard.AkkaPort, endpoint.PublicHost, guard.Port)
                    : endpoint,
                    guarded ? setup.Tls : null,
                    refusal => loggers.CreateLogger("ActorRing.ControlPort").LogWarning("{Refusal}", refusal))
                .AddStartup((system, _) => Volatile.Write(ref provider, ((ExtendedActorSystem)system).Provider as RejoinableRemoteProvider))
                // Once this process is stopping (an ordered shutdown, `serve --interactive`'s /exit, Ctrl-C or SIGTERM)
                // its peers going away is expected too: `/exit` used to end with Akka's "Association ... has failed"
                // and "Disassociated" warnings. After the bridge to our log stops, Akka prints what is left of its
                // shutdown to stdout at its current level, bypassing the filter above, and its remoting warnings
                // ("Unable to REMOVE channel ...") are expected then as well, so only errors may go out.
                .AddStartup((system, _) => lifetime.ApplicationStopping.Register(() =>
                {
                    Volatile.Write(ref _peerLossExpected, true);
                    system.EventStream.SetLogLevel(Akka.Event.LogLevel.ErrorLevel);
                }))
                .AddActorRingRank(new RankActorsOptions(
                    worker,
                    setup.Engines,
                    new RingCommunicatorConnector(ring, ringOptions, loggers.CreateLogger("ActorRing.Transport")),
                    coordinator,
                    ring.Rank == 0 ? new SamplerPickerFactory(setup.Tokenizer) : null,
                    options.Scheduling,
                    setup.Tokenizer is { } tokenizer ? new StopStringRules(tokenizer) : null,
                    ring.Rank == 0 ? sp.GetRequiredService<ActorRing.Actors.Serving.ServingPort>() : null));
        });

        // After Akka, so the guard forwards to a listening system from its first connection, and stops first.
        if (guarded) builder.Services.AddHostedService(sp => new ControlPortGuardService(sp.GetRequiredService<ControlPortGuard>()));
        // After the guard, so it stops before the guard ends the other ranks' connections.
        if (ring.Rank == 0) builder.Services.AddHostedService(sp => new LeaveClusterOnStop(sp));

        if (ring.Rank == 0)
        {
            // The queue to the step loop, shared with /metrics, which reads the loop's counters from it.
            builder.Services.AddSingleton<ActorRing.Actors.Serving.ServingPort>();
            builder.Services.AddSingleton(sp => new GenerationMetrics(sp.GetRequiredService<ActorRing.Actors.Serving.ServingPort>()));
            // The coordinator exists only once Akka's hosted service has started, so it is resolved on first use.
            builder.Services.AddSingleton(sp => new GenerationService(
                async () => new CoordinatorClient(sp.GetRequiredService<ActorSystem>(),
                    await sp.GetRequiredService<ActorRegistry>().GetAsync<CoordinatorActor>()),
                setup.Tokenizer, setup.ChatTemplate, options.GenerationDefaults, options.Scheduling.MaxBatch,
                options.Load.ContextFor(setup.Engines.Config),
                ring.WorldSize, options.ReadyTimeout,
                sp.GetRequiredService<ILoggerFactory>().CreateLogger("ActorRing.Generation"),
                sp.GetRequiredService<GenerationMetrics>()));
        }
        if (ring.Rank == 0 && (options.Interactive || options.OneShot))
        {
            builder.Services.AddHostedService(sp => new PromptService(
                options, setup,
                sp.GetRequiredService<GenerationService>(),
                sp.GetRequiredService<IHostApplicationLifetime>(),
                sp.GetRequiredService<ServeExit>()));
        }
        if (builder is WebApplicationBuilder web)
        {
            web.WebHost.UseUrls($"http://{(options.HttpHost.Contains(':') ? $"[{options.HttpHost}]" : options.HttpHost)}:{options.HttpPort}");
            web.WebHost.ConfigureKestrel(k => HttpLimits.Apply(k.Limits, options.HttpTimeout));
            web.Services.AddHostedService(sp => new HttpAnnouncer(options, sp));
            var app = web.Build();
            new OpenAiApi(app.Services.GetRequiredService<GenerationService>(), options.ModelId, options.ApiKey)
                .Map(app, app.Services.GetRequiredService<GenerationMetrics>());
            return app;
        }
        return ((HostApplicationBuilder)builder).Build();
    }

    /// <summary>
    /// Rank 0 listens at master_port and names itself by the master address exactly as workers dial it (Akka
    /// drops messages addressed to any other name). Workers listen on a free port and name themselves by the
    /// local address that routes to rank 0, so replies find them on a multi-homed machine.
    /// </summary>
    internal static (RemoteEndpoint Endpoint, string CoordinatorPath) Endpoints(ServeOptions options, RingConfig ring, bool tls = false)
    {
        string bind = options.BindAddress.ToString();
        string localCoordinator = $"/user/{ControlProtocol.CoordinatorName}";
        if (ring.WorldSize == 1 && ring.MasterPort is null)
            return (new RemoteEndpoint("127.0.0.1", 0, "127.0.0.1"), localCoordinator);
        var (masterHost, masterPort) = ring.RequireMaster();
        if (ring.Rank == 0)
            return (new RemoteEndpoint(bind, masterPort, options.Advertise ?? masterHost), localCoordinator);
        return (new RemoteEndpoint(bind, options.ControlPort, options.Advertise ?? LocalAddressToward(masterHost)),
            ActorRingAkkaExtensions.CoordinatorPath(masterHost, masterPort, tls));
    }

    /// <summary>
    /// Null when nothing listens on <paramref name="port"/>, else the reason. It binds with SO_REUSEADDR only
    /// (not SO_REUSEPORT), so connections left in TIME_WAIT by a previous run do not count, but a live listener does.
    /// </summary>
    private static string? PortInUse(IPAddress bind, int port)
    {
        using var probe = new Socket(bind.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        if (OperatingSystem.IsLinux()) probe.SetRawSocketOption(1 /* SOL_SOCKET */, 2 /* SO_REUSEADDR */, BitConverter.GetBytes(1));
        try
        {
            probe.Bind(new IPEndPoint(bind, port));
            probe.Listen(1);
            return null;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.AddressAlreadyInUse or SocketError.AccessDenied)
        {
            return e.Message;
        }
    }

    private static int FreeLoopbackPort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    /// <summary>The local address the OS would use to reach <paramref name="host"/> (no packet is sent).</summary>
    private static string LocalAddressToward(string host)
    {
        try
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            probe.Connect(host, 9);
            return ((IPEndPoint)probe.LocalEndPoint!).Address.ToString();
        }
        catch (SocketException)
        {
            return Dns.GetHostName();
        }
    }
}

/// <summary>Runs the control port's guard for the host's lifetime.</summary>
internal sealed class ControlPortGuardService(ControlPortGuard guard) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        guard.Start();
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken) => await guard.DisposeAsync();
}

/// <summary>
/// Rank 0 stopping on its own (`/exit`, Ctrl-C, SIGTERM; not a cluster shutdown, which has already dropped every
/// rank) tells the other ranks first: they stay up for its next start and log an ordered departure, where a
/// vanished master used to leave them a broken ring and three errors.
/// </summary>
internal sealed class LeaveClusterOnStop(IServiceProvider services) : IHostedService
{
    /// <summary>Within the host's shutdown timeout; the coordinator gives up on a silent rank after 3 s.</summary>
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(4);

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (!services.GetRequiredService<ActorRegistry>().TryGet<CoordinatorActor>(out var coordinator)) return;
        try
        {
            await new CoordinatorClient(services.GetRequiredService<ActorSystem>(), coordinator).LeaveAsync("its process is stopping", Timeout);
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
            // A rank that did not answer finds out through the lost connection, as before.
        }
    }
}

/// <summary>The process exit code decided by a hosted service (0 unless a prompt run failed), and stdout.</summary>
public sealed class ServeExit
{
    public int Code { get; set; }

    /// <summary>The real standard output (completions and the chat prompt only).</summary>
    public TextWriter Out { get; init; } = Console.Out;
}
