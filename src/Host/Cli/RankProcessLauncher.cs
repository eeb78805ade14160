using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using ActorRing.Transport;

namespace ActorRing.Host.Cli;

/// <summary>
/// Runs an N-rank job on this machine: writes N loopback ring configs to a temp directory and starts N child
/// processes of this executable, each with <c>RING_CONFIG</c> pointing at its file and a shared random
/// <c>ACTORRING_SECRET</c>. No child outlives the launcher: the whole tree is killed on dispose, on Ctrl-C
/// and on process exit, and children started here exit by themselves when the parent is SIGKILLed (they
/// call <see cref="ExitWhenParentDies"/>, which watches the stdin pipe the parent holds open).
/// </summary>
public sealed class RankProcessLauncher : IDisposable
{
    /// <summary>Set in every child: tells <see cref="ExitWhenParentDies"/> that stdin is the parent's pipe.</summary>
    public const string ParentWatchVariable = "ACTORRING_PARENT_WATCH";

    /// <summary>Exit code of a child that noticed its parent is gone.</summary>
    public const int ParentGoneExitCode = 71;

    private readonly List<Process> _processes = [];
    private readonly string _configDirectory;
    private readonly EventHandler _onExit;
    private readonly List<PosixSignalRegistration> _signals = [];
    private int _disposed;

    private RankProcessLauncher(IReadOnlyList<RingConfig> configs, string configDirectory, string secret)
    {
        Configs = configs;
        _configDirectory = configDirectory;
        Secret = secret;
        _onExit = (_, _) => KillAllAndClean();
        AppDomain.CurrentDomain.ProcessExit += _onExit;
        // Ctrl-C, kill, a closed terminal: kill the ranks and remove the ring files first, then let the default
        // action end this process (the handler does not set Cancel). ProcessExit alone is not raised for every one.
        foreach (var signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP, PosixSignal.SIGQUIT })
            _signals.Add(PosixSignalRegistration.Create(signal, _ => KillAllAndClean()));
    }

    public IReadOnlyList<RingConfig> Configs { get; }
    public string Secret { get; }
    public IReadOnlyList<Process> Processes => _processes;

    /// <summary>
    /// serve's <c>--cores</c> for local rank <paramref name="rank"/> when all ranks run on this machine: one
    /// block of cores each when their threads fit, nothing otherwise (see <see cref="Model.CorePinning"/>).
    /// </summary>
    public static string[] CoreArguments(int rank, int worldSize, int threadsPerRank) =>
        Model.CorePinning.CoresFor(rank, worldSize, threadsPerRank) is { } cores ? ["--cores", string.Join(',', cores)] : [];

    /// <summary>Path of rank <paramref name="rank"/>'s ring file (mistral.rs JSON).</summary>
    public string ConfigPath(int rank) => Path.Combine(_configDirectory, $"ring_{rank}.json");

    /// <param name="worldSize">Number of rank processes.</param>
    /// <param name="arguments">Command-line arguments of each rank (given the rank).</param>
    /// <param name="onOutput">Receives (rank, isStdErr, line) for every output line; default: forwarded to
    /// this process's stderr prefixed with the rank.</param>
    /// <param name="environment">Extra environment variables for every child.</param>
    /// <param name="executable">Command to run instead of this executable (e.g. in tests): file and leading arguments.</param>
    /// <param name="skipRank0">Writes rank 0's ring file but starts no process for it: the caller runs rank 0
    /// in its own process (to use the coordinator's in-process client API).</param>
    /// <param name="rank0OwnsConsole">Rank 0 writes straight to this process's stdout and stderr (inherited, not
    /// piped through <paramref name="onOutput"/>): streamed tokens show up at once, not at the next newline, and
    /// the completion and the summary after it arrive in the order rank 0 wrote them, which two separate relays
    /// of two pipes could not promise.</param>
    public static RankProcessLauncher Start(int worldSize, Func<int, IEnumerable<string>> arguments,
        Action<int, bool, string>? onOutput = null, IReadOnlyDictionary<string, string>? environment = null,
        (string File, string[] LeadingArgs)? executable = null, int? masterPort = null, bool rank0OwnsConsole = false,
        bool skipRank0 = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        var configs = RingConfig.ForLoopback(worldSize, masterPort, "loopback");
        RemoveStaleConfigDirectories();
        string dir = Directory.CreateTempSubdirectory(ConfigDirectoryPrefix).FullName;
        File.WriteAllText(Path.Combine(dir, OwnerFile), Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        string secret = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));
        var launcher = new RankProcessLauncher(configs, dir, secret);
        try
        {
            var (file, leading) = executable ?? SelfCommand();
            onOutput ??= (rank, _, line) => Console.Error.WriteLine($"[rank {rank}] {line}");
            for (int rank = 0; rank < worldSize; rank++)
            {
                File.WriteAllText(launcher.ConfigPath(rank), configs[rank].ToJson());
                if (rank == 0 && skipRank0) continue; // the caller hosts rank 0 itself (bench serve)
                bool inherit = rank == 0 && rank0OwnsConsole;
                var psi = new ProcessStartInfo(file)
                {
                    RedirectStandardInput = true,
                    RedirectStandardOutput = !inherit,
                    RedirectStandardError = !inherit,
                    UseShellExecute = false,
                };
                foreach (var a in leading) psi.ArgumentList.Add(a);
                foreach (var a in arguments(rank)) psi.ArgumentList.Add(a);
                psi.Environment[RingConfig.EnvironmentVariable] = launcher.ConfigPath(rank);
                psi.Environment[RingOptions.SecretEnvironmentVariable] = secret;
                psi.Environment[ParentWatchVariable] = "1";
                if (environment is not null) foreach (var (k, v) in environment) psi.Environment[k] = v;

                var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
                int r = rank;
                var sink = onOutput;
                p.Start();
                launcher._processes.Add(p);
                if (!inherit)
                {
                    p.OutputDataReceived += (_, e) => { if (e.Data is not null) sink(r, false, e.Data); };
                    p.ErrorDataReceived += (_, e) => { if (e.Data is not null) sink(r, true, e.Data); };
                    p.BeginOutputReadLine();
                    p.BeginErrorReadLine();
                }
                // stdin stays open and unused: its EOF is the child's signal that this process died.
            }
            return launcher;
        }
        catch
        {
            launcher.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Waits for every rank to exit. When one fails, the others get <paramref name="grace"/> to finish (they
    /// usually fail on the broken ring by themselves) and are then killed. On timeout all are killed.
    /// </summary>
    /// <returns>Exit codes by rank (-1 for a rank that had to be killed).</returns>
    public async Task<int[]> WaitForExitAsync(TimeSpan timeout, TimeSpan grace, CancellationToken ct = default)
    {
        var deadline = Stopwatch.StartNew();
        var exits = _processes.Select(p => p.WaitForExitAsync(CancellationToken.None)).ToArray();
        TimeSpan? failedAt = null;
        while (!exits.All(t => t.IsCompleted))
        {
            ct.ThrowIfCancellationRequested();
            if (failedAt is null && _processes.Where(p => p.HasExited).Any(p => p.ExitCode != 0)) failedAt = deadline.Elapsed;
            if (deadline.Elapsed > timeout || (failedAt is not null && deadline.Elapsed - failedAt > grace)) break;
            await Task.WhenAny(Task.WhenAll(exits), Task.Delay(100, ct)).ConfigureAwait(false);
        }
        var codes = new int[_processes.Count];
        for (int i = 0; i < codes.Length; i++)
        {
            var p = _processes[i];
            if (!p.HasExited)
            {
                Kill(p);
                codes[i] = -1;
            }
            else
            {
                // Ensures the asynchronous output readers have delivered every line before we return.
                p.WaitForExit();
                codes[i] = p.ExitCode;
            }
        }
        return codes;
    }

    /// <summary>Prefix of the temporary directories holding a launch's ring files.</summary>
    public const string ConfigDirectoryPrefix = "actorring-ring-";

    /// <summary>In each such directory: the launcher's process id, so a later launch can tell a stale one.</summary>
    public const string OwnerFile = "launcher.pid";

    /// <summary>The directory holding this launch's ring files (removed on dispose and on a fatal signal).</summary>
    public string ConfigDirectory => _configDirectory;

    /// <summary>
    /// A launcher killed by SIGKILL runs no handler, so its ring-file directory stays behind. Each launch removes
    /// the directories whose owning launcher no longer runs (its process id is gone, or is now another program).
    /// </summary>
    internal static void RemoveStaleConfigDirectories()
    {
        string[] candidates;
        try
        {
            candidates = Directory.GetDirectories(Path.GetTempPath(), ConfigDirectoryPrefix + "*");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return;
        }
        foreach (var dir in candidates)
        {
            try
            {
                var owner = File.ReadAllText(Path.Combine(dir, OwnerFile)).Trim();
                if (OwnerAlive(owner)) continue;
                Directory.Delete(dir, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Not ours to remove (another user), or no owner file (an older launch, or one starting now): leave it.
            }
        }
    }

    private static bool OwnerAlive(string pid)
    {
        if (!int.TryParse(pid, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id)) return false;
        try
        {
            using var p = Process.GetProcessById(id);
            // A recycled id belongs to some other program; a launcher is this executable (or dotnet running it).
            return !p.HasExited && (p.ProcessName.StartsWith("actorring", StringComparison.Ordinal) || p.ProcessName.StartsWith("dotnet", StringComparison.Ordinal)
                                    || p.ProcessName.StartsWith("ActorRing", StringComparison.Ordinal));
        }
        catch (ArgumentException)
        {
            return false; // no such process
        }
    }

    private void KillAllAndClean()
    {
        KillAll();
        RemoveConfigDirectory();
    }

    private void RemoveConfigDirectory()
    {
        try
        {
            Directory.Delete(_configDirectory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Already gone, or a rank still holds a file open; the next launch removes it.
        }
    }

    /// <summary>Kills every rank process and its descendants (idempotent, never throws).</summary>
    public void KillAll()
    {
        // Finding descendants scans /proc and takes seconds on a loaded machine, so first stop the ranks
        // themselves with one signal each, which is what matters when the parent is being terminated.
        foreach (var p in _processes) Kill(p, tree: false);
        foreach (var p in _processes) Kill(p, tree: true);
    }

    private static void Kill(Process p, bool tree = true)
    {
        try
        {
            if (!p.HasExited) p.Kill(entireProcessTree: tree);
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            // Already exited between the check and the kill.
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        KillAll();
        foreach (var p in _processes)
        {
            try
            {
                p.WaitForExit(5000);
            }
            catch (InvalidOperationException)
            {
                // Never started.
            }
            p.Dispose();
        }
        foreach (var registration in _signals) registration.Dispose();
        AppDomain.CurrentDomain.ProcessExit -= _onExit;
        RemoveConfigDirectory();
    }

    /// <summary>
    /// Called early by a child rank. When started by a launcher (<c>ACTORRING_PARENT_WATCH=1</c>), a
    /// background thread reads stdin, which is a pipe whose write end only the parent holds; end-of-file
    /// means the parent is gone (even by SIGKILL, which runs no handler), and the child exits at once.
    /// Without the variable it does nothing, so a rank started by hand with stdin closed keeps running.
    /// </summary>
    public static void ExitWhenParentDies()
    {
        if (Environment.GetEnvironmentVariable(ParentWatchVariable) != "1") return;
        var watcher = new Thread(() =>
        {
            try
            {
                using var stdin = Console.OpenStandardInput();
                var buf = new byte[64];
                while (stdin.Read(buf, 0, buf.Length) > 0) { }
            }
            catch (IOException)
            {
                // A broken pipe means the same as end-of-file.
            }
            Console.Error.WriteLine("parent process is gone; exiting");
            Environment.Exit(ParentGoneExitCode);
        }) { IsBackground = true, Name = "parent-watch" };
        watcher.Start();
    }

    /// <summary>How to start this same program again: the apphost itself, or <c>dotnet app.dll</c>.</summary>
    public static (string File, string[] LeadingArgs) SelfCommand()
    {
        string? path = Environment.ProcessPath;
        if (path is null) throw new InvalidOperationException("cannot determine this process's executable path");
        string name = Path.GetFileNameWithoutExtension(path);
        if (name.Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            string entry = Assembly.GetEntryAssembly()?.Location
                           ?? throw new InvalidOperationException("running under the dotnet host without an entry assembly");
            return (path, [entry]);
        }
        return (path, []);
    }
}
