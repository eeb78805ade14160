using System.Runtime.InteropServices;

namespace ActorRing.Host.Bench;

/// <summary>
/// CPU time of the calling thread (Linux <c>CLOCK_THREAD_CPUTIME_ID</c>). On a host shared with compilers and
/// other benchmarks, a step's wall time mostly measures how long the scheduler kept the thread off its core;
/// its CPU time measures the work, so two kernels can be compared under load.
/// </summary>
internal static partial class ThreadCpuTime
{
    private const int ClockThreadCpuTimeId = 3;

    /// <summary>Milliseconds of CPU this thread has used, or NaN where the clock is not available.</summary>
    public static unsafe double Milliseconds()
    {
        if (!OperatingSystem.IsLinux()) return double.NaN;
        long* ts = stackalloc long[2]; // struct timespec { time_t tv_sec; long tv_nsec; } on 64-bit Linux
        return clock_gettime(ClockThreadCpuTimeId, ts) == 0 ? ts[0] * 1e3 + ts[1] / 1e6 : double.NaN;
    }

    [LibraryImport("libc")]
    private static unsafe partial int clock_gettime(int clockId, long* timespec);
}
