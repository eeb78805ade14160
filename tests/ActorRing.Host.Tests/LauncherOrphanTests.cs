using System.Diagnostics;

namespace ActorRing.Host.Tests;

/// <summary>
/// <c>generate --world-size N</c> starts N rank processes. If the parent is killed outright (SIGKILL: no handler
/// runs), the ranks must still go away on their own instead of lingering with their ports bound.
/// </summary>
public sealed class LauncherOrphanTests
{
    [Fact]
    public async Task Ranks_exit_when_the_generate_parent_is_sigkilled()
    {
        using var parent = new RankProcess(["generate", "--world-size", "2", "--prompt", "Once upon a time"]);
        await parent.WaitForLogAsync("waiting for ranks", TimeSpan.FromSeconds(60));

        int[] ranks = ChildrenOf(parent.Id);
        Assert.Equal(2, ranks.Length);

        using (var kill = Process.Start(new ProcessStartInfo("kill", ["-KILL", parent.Id.ToString()]) { UseShellExecute = false })!)
        {
            kill.WaitForExit(5000);
        }

        var deadline = Stopwatch.StartNew();
        while (ranks.Any(IsAlive) && deadline.Elapsed < TimeSpan.FromSeconds(20))
        {
            await Task.Delay(100);
        }
        int[] survivors = ranks.Where(IsAlive).ToArray();
        foreach (int pid in survivors)
        {
            try { Process.GetProcessById(pid).Kill(entireProcessTree: true); } catch (ArgumentException) { }
        }
        Assert.True(survivors.Length == 0, $"rank processes {string.Join(", ", survivors)} outlived their SIGKILLed parent by 20 s");
    }

    /// <summary>Direct children of <paramref name="parentPid"/>, read from /proc (field 4 of stat is the parent pid).</summary>
    private static int[] ChildrenOf(int parentPid)
    {
        var children = new List<int>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            string stat;
            try { stat = File.ReadAllText(Path.Combine(dir, "stat")); }
            catch (IOException) { continue; }
            catch (UnauthorizedAccessException) { continue; }
            // The command name is in parentheses and may itself contain spaces, so parse after the last ')'.
            string[] rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (int.Parse(rest[1]) == parentPid) children.Add(pid);
        }
        return children.ToArray();
    }

    private static bool IsAlive(int pid)
    {
        // A zombie (state Z) has exited; only its parent's wait is missing, and that parent is gone.
        try { return File.ReadAllText($"/proc/{pid}/stat") is var s && s[(s.LastIndexOf(')') + 2)] != 'Z'; }
        catch (IOException) { return false; }
    }
}
