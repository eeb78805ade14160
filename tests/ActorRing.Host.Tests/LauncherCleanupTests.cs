using ActorRing.Host.Cli;

namespace ActorRing.Host.Tests;

/// <summary>generate's temporary ring-file directory does not outlive its launcher.</summary>
public sealed class LauncherCleanupTests
{
    [Fact]
    public void A_directory_left_by_a_killed_launcher_is_removed_by_the_next_launch_and_a_live_ones_is_kept()
    {
        string Make(string owner)
        {
            var dir = Directory.CreateTempSubdirectory(RankProcessLauncher.ConfigDirectoryPrefix).FullName;
            File.WriteAllText(Path.Combine(dir, "ring_0.json"), "{}");
            File.WriteAllText(Path.Combine(dir, RankProcessLauncher.OwnerFile), owner);
            return dir;
        }
        // A process id that is not running: the largest one the kernel hands out, plus one.
        int dead = int.Parse(File.ReadAllText("/proc/sys/kernel/pid_max").Trim()) + 1;
        var stale = Make(dead.ToString());
        var live = Make(Environment.ProcessId.ToString()); // this test host (dotnet) stands in for a running launcher
        try
        {
            RankProcessLauncher.RemoveStaleConfigDirectories();
            Assert.False(Directory.Exists(stale));
            Assert.True(Directory.Exists(live));
        }
        finally
        {
            if (Directory.Exists(stale)) Directory.Delete(stale, true);
            Directory.Delete(live, true);
        }
    }

    [Fact]
    public async Task Sigterm_to_generate_removes_its_ring_files()
    {
        var before = Directory.GetDirectories(Path.GetTempPath(), RankProcessLauncher.ConfigDirectoryPrefix + "*").ToHashSet();
        using var generate = new RankProcess(["generate", "--world-size", "2", "--prompt", "Once upon a time", "--max-tokens", "200"]);
        string? mine = null;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (mine is null && clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            mine = Directory.GetDirectories(Path.GetTempPath(), RankProcessLauncher.ConfigDirectoryPrefix + "*")
                .FirstOrDefault(d => !before.Contains(d) && File.Exists(Path.Combine(d, RankProcessLauncher.OwnerFile))
                                     && File.ReadAllText(Path.Combine(d, RankProcessLauncher.OwnerFile)).Trim() == generate.Id.ToString());
            await Task.Delay(100);
        }
        Assert.NotNull(mine);
        generate.Terminate();
        await generate.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(Directory.Exists(mine), $"{mine} was left behind");
    }
}
