using ActorRing.Transport;

namespace ActorRing.Host.Tests;

/// <summary>
/// A ring of real <c>serve</c> processes on loopback, for one test: every rank's ring file in a temporary folder,
/// the environment that makes a process one of its ranks, and every process the test started through it. Disposal
/// kills those processes and deletes the folder; <see cref="RunAsync"/> puts every rank's log into the failure of a
/// test, because a multi-process failure is rarely explained by one process's output.
/// </summary>
public sealed class LoopbackRing : IDisposable
{
    /// <summary>A port free on loopback right now (for a rank's HTTP API), below the ephemeral range (see RingConfig.FreeLoopbackPorts).</summary>
    public static int FreePort() => RingConfig.FreeLoopbackPorts(1)[0];

    private readonly List<(string Name, RankProcess Process)> _started = new();

    public LoopbackRing(int worldSize)
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("actorring-ring-").FullName;
        Configs = RingConfig.ForLoopback(worldSize);
        for (int r = 0; r < worldSize; r++) File.WriteAllText(ConfigPath(r), Configs[r].ToJson());
    }

    public string Directory { get; }

    public IReadOnlyList<RingConfig> Configs { get; }

    public string ConfigPath(int rank) => Path.Combine(Directory, $"ring_{rank}.json");

    /// <summary>What makes a process rank <paramref name="rank"/> of this ring: its ring file and the cluster secret.</summary>
    public Dictionary<string, string> Env(int rank, string secret = TestSecrets.Cluster) => new()
    {
        ["RING_CONFIG"] = ConfigPath(rank),
        ["ACTORRING_SECRET"] = secret,
    };

    /// <summary>Starts <c>actorring serve ARGS</c> as rank <paramref name="rank"/>. The ring disposes it (a test may too).</summary>
    public RankProcess Serve(int rank, IEnumerable<string>? args = null, bool redirectStdin = false, string secret = TestSecrets.Cluster,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var env = Env(rank, secret);
        if (environment is not null) foreach (var (k, v) in environment) env[k] = v;
        string[] argv = ["serve", .. args ?? []];
        var process = new RankProcess(argv, env, redirectStdin);
        lock (_started) _started.Add(($"rank {rank} (pid {process.Id}): {string.Join(' ', argv)}", process));
        return process;
    }

    /// <summary>The stderr of every process started through this ring, in start order, each under its own heading.</summary>
    public string Logs()
    {
        lock (_started)
            return string.Concat(_started.Select(s => $"\n----- {s.Name} -----\nstderr:\n{s.Process.Stderr}stdout:\n{s.Process.Stdout}"));
    }

    /// <summary>Runs <paramref name="test"/>; if it fails, the failure carries every rank's log.</summary>
    public async Task RunAsync(Func<Task> test)
    {
        try
        {
            await test();
        }
        catch (Exception e)
        {
            throw new RingTestFailure($"{e.GetType().Name}: {e.Message}\n===== logs of every rank ====={Logs()}", e);
        }
    }

    public void Dispose()
    {
        lock (_started)
        {
            foreach (var (_, process) in _started) process.Dispose();
        }
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A process that outlived its kill may still hold a file; the temporary folder is the system's to clean.
        }
    }

    private sealed class RingTestFailure(string message, Exception inner) : Exception(message, inner);
}
