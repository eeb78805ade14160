using System.Diagnostics;
using System.Text;

namespace ActorRing.Host.Tests;

/// <summary>
/// One <c>actorring</c> process started by a test, with captured output. Every wait has a deadline, and
/// disposal kills the whole process tree, so a failing test never leaves ranks behind.
/// </summary>
public sealed class RankProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    /// <param name="mergeStreams">stderr goes into the stdout pipe, as in a terminal where both are one file; the
    /// interleaving the process wrote is then what <see cref="Stdout"/> holds.</param>
    /// <param name="launcher">A command that execs actorring with its arguments (e.g. <c>ip netns exec NS</c>), so the
    /// process id is still actorring's.</param>
    public RankProcess(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, bool redirectStdin = false, bool mergeStreams = false,
        string[]? launcher = null)
    {
        var psi = new ProcessStartInfo(launcher is [var first, ..] ? first : mergeStreams ? "/bin/sh" : Executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = redirectStdin,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        // exec: the shell becomes actorring, so the process id (and the tree that disposal kills) is its own.
        if (launcher is not null) foreach (var a in launcher.Skip(1).Append(Executable)) psi.ArgumentList.Add(a);
        else if (mergeStreams) foreach (var a in (string[])["-c", "exec \"$0\" \"$@\" 2>&1", Executable]) psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        // A test controls each child's environment fully: no ring file or secret leaks in from the machine.
        psi.Environment.Remove("RING_CONFIG");
        psi.Environment.Remove("ACTORRING_SECRET");
        if (environment is not null) foreach (var (k, v) in environment) psi.Environment[k] = v;
        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_stdout) _stdout.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.AppendLine(e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>The apphost the test project copies next to itself from the Host project.</summary>
    public static string Executable => Path.Combine(AppContext.BaseDirectory, "actorring");

    public StreamWriter StandardInput => _process.StandardInput;

    public string Stdout { get { lock (_stdout) return _stdout.ToString(); } }

    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    public bool HasExited => _process.HasExited;

    public int Id => _process.Id;

    /// <summary>SIGTERM, as systemd or <c>kill</c> sends it (Process.Kill would be SIGKILL).</summary>
    public void Terminate()
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-TERM", Id.ToString()]) { UseShellExecute = false })!;
        kill.WaitForExit(5000);
    }

    /// <summary>Sends a signal by name (STOP, CONT, INT, ...) to this process only.</summary>
    public void Signal(string name)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", [$"-{name}", Id.ToString()]) { UseShellExecute = false })!;
        kill.WaitForExit(5000);
    }

    /// <summary>Waits for exit; on timeout the process tree is killed and the test fails with its output.</summary>
    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
            throw new TimeoutException($"actorring {string.Join(' ', _process.StartInfo.ArgumentList)} did not exit within {timeout.TotalSeconds:0} s\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
        }
        _process.WaitForExit(); // drains the asynchronous output readers
        return _process.ExitCode;
    }

    /// <summary>Waits until <paramref name="text"/> appears on stderr (the log) <paramref name="occurrences"/> times, or fails after the deadline.</summary>
    public async Task WaitForLogAsync(string text, TimeSpan timeout, int occurrences = 1)
    {
        var deadline = Stopwatch.StartNew();
        while (Occurrences(Stderr, text) < occurrences)
        {
            if (deadline.Elapsed > timeout || _process.HasExited)
                throw new TimeoutException($"'{text}' did not appear {occurrences} time(s) in the log within {timeout.TotalSeconds:0} s (exited: {_process.HasExited})\nstderr:\n{Stderr}");
            await Task.Delay(100);
        }
    }

    private static int Occurrences(string haystack, string text)
    {
        int count = 0;
        for (int at = haystack.IndexOf(text, StringComparison.Ordinal); at >= 0; at = haystack.IndexOf(text, at + text.Length, StringComparison.Ordinal)) count++;
        return count;
    }

    /// <summary>Waits until stdout holds <paramref name="count"/> non-empty lines, or fails after the deadline.</summary>
    public async Task WaitForStdoutLinesAsync(int count, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length < count)
        {
            if (clock.Elapsed > timeout || _process.HasExited)
                throw new TimeoutException($"expected {count} line(s) on stdout within {timeout.TotalSeconds:0} s\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
            await Task.Delay(100);
        }
    }

    /// <summary>SIGKILL to this process but not its children (what an OOM killer or `kill -9` does).</summary>
    public void KillProcessOnly() => _process.Kill(entireProcessTree: false);

    public void Kill()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }
}
