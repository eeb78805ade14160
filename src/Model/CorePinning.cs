using System.Runtime.InteropServices;

namespace ActorRing.Model;

/// <summary>
/// Pins the calling thread to one CPU core (Linux). Why: ranks on one machine hand data to each other over
/// loopback sockets, and Linux treats a socket wake-up as a "sync" wake-up, placing the woken rank on the
/// waker's core on the assumption that the waker is about to sleep. It is not (it computes, or spins waiting
/// for its neighbour), so both ranks then time-share one core in 2–4 ms slices while the other core idles:
/// perf sched showed exactly that during llama-160m decode at world size 2, with 3 ms all-reduce stalls at the
/// 99th percentile. One core per compute thread removes those placements.
/// </summary>
public static partial class CorePinning
{
    /// <summary>Pins the calling thread to <paramref name="core"/>; false when the OS refused or is not Linux. A compute
    /// thread takes the normal scheduling policy back (see <see cref="ConfineProcess"/>).</summary>
    public static bool PinCurrentThread(int core)
    {
        SetBatch(0, false);
        return SetAffinity(0, [core]); // thread id 0: the caller
    }

    /// <summary>
    /// Confines every thread of this process, present and future, to <paramref name="cores"/>: each existing
    /// thread (from /proc/self/task) gets the mask, and threads inherit their creator's. For a rank sharing
    /// the machine with others: its runtime threads (actor dispatchers, remoting, GC) then wake on its own
    /// cores instead of being placed, like the ranks themselves, next to another rank's busy compute thread.
    /// Those threads also go to SCHED_BATCH (no privilege needed), and threads they create inherit it: a batch
    /// thread gets its fair share of the core but does not preempt the running thread when it wakes. Before, the
    /// actor dispatcher woken by a step's tokens preempted the compute thread on the one core they share, for
    /// 3-10 ms at a time: `generate --world-size 2` on the bundled model had a control share under 10% in 10 of 19
    /// runs, and in 44 of 48 with this (README "Serving engine", round 24). Compute threads set
    /// the normal policy back when they pin themselves (<see cref="PinCurrentThread"/>). Thread-pool threads the
    /// runtime starts later keep the normal policy.
    /// Returns false when nothing could be set (not Linux, or no /proc).
    /// </summary>
    public static bool ConfineProcess(IReadOnlyCollection<int> cores)
    {
        if (!OperatingSystem.IsLinux()) return false;
        bool any = false;
        try
        {
            foreach (var task in new DirectoryInfo("/proc/self/task").EnumerateDirectories())
            {
                if (int.TryParse(task.Name, out int tid))
                {
                    any |= SetAffinity(tid, cores);
                    SetBatch(tid, true);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No /proc: whatever was set stays set.
        }
        return any;
    }

    /// <summary>Sets thread <paramref name="tid"/>'s CPU mask (0 = the calling thread); false when refused.</summary>
    private static bool SetAffinity(int tid, IReadOnlyCollection<int> cores)
    {
        if (!OperatingSystem.IsLinux() || cores.Count == 0 || cores.Any(c => c < 0 || c >= 1024)) return false;
        Span<ulong> mask = stackalloc ulong[16]; // 1024 CPUs
        foreach (int c in cores) mask[c / 64] |= 1UL << (c % 64);
        try
        {
            unsafe
            {
                fixed (ulong* m = mask) return sched_setaffinity(tid, (nint)(mask.Length * sizeof(ulong)), m) == 0;
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>
    /// The cores for <paramref name="threadsPerRank"/> threads of local rank <paramref name="localRank"/>
    /// when <paramref name="localRanks"/> ranks share this machine: consecutive blocks, or null when they do
    /// not all fit (then nothing is pinned, and the scheduler shares the cores).
    /// </summary>
    public static int[]? CoresFor(int localRank, int localRanks, int threadsPerRank)
    {
        if (localRanks * threadsPerRank > Environment.ProcessorCount) return null;
        return Enumerable.Range(localRank * threadsPerRank, threadsPerRank).ToArray();
    }

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int sched_setaffinity(int pid, nint cpusetSize, ulong* mask);

    /// <summary>SCHED_BATCH (<paramref name="batch"/>) or SCHED_OTHER for thread <paramref name="tid"/> (0 = the caller).</summary>
    private static unsafe bool SetBatch(int tid, bool batch)
    {
        if (!OperatingSystem.IsLinux()) return false;
        int priority = 0;
        try { return sched_setscheduler(tid, batch ? 3 : 0, &priority) == 0; } // SCHED_BATCH, SCHED_OTHER
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int sched_setscheduler(int pid, int policy, int* param);
}
