using System.Diagnostics;

namespace ActorRing.Model.Tests;

/// <summary>The hand-off between a rank's compute thread and its split helpers under the timing that once lost one.</summary>
public sealed class SplitWorkersTests
{
    [Fact]
    public async Task Split_helpers_never_miss_a_hand_off_that_comes_as_they_fall_asleep()
    {
        // Each product starts about when the helpers stop spinning (20 µs) and go to sleep: the moment a helper
        // announces its sleep and re-checks for work while the caller publishes work and looks for sleepers.
        // With a volatile write for the announcement, x86 let both miss each other and both slept for good
        // (this loop hung within 15,000 products every time).
        const double SpinMicroseconds = 20;
        using var workers = new SplitWorkers(2, TimeSpan.FromMicroseconds(SpinMicroseconds));
        var rng = new Random(1);
        long done = 0;
        var loop = Task.Run(() =>
        {
            for (int round = 0; round < 100_000; round++)
            {
                workers.Run(_ => Interlocked.Increment(ref done));
                long until = Stopwatch.GetTimestamp() + (long)(SpinMicroseconds * (0.9 + 0.2 * rng.NextDouble()) * Stopwatch.Frequency / 1e6);
                while (Stopwatch.GetTimestamp() < until) Thread.SpinWait(1);
            }
        });
        Assert.True(await Task.WhenAny(loop, Task.Delay(TimeSpan.FromSeconds(60))) == loop, $"a hand-off was lost: {Interlocked.Read(ref done)} of 200000 parts ran, then the workers slept");
        Assert.Equal(200_000, done);
    }

    [Fact]
    public void A_helper_that_never_finishes_fails_the_product_instead_of_hanging_the_rank()
    {
        using var release = new ManualResetEventSlim(false);
        using var workers = new SplitWorkers(2, TimeSpan.Zero, partDeadline: TimeSpan.FromMilliseconds(300));
        var clock = Stopwatch.StartNew();
        var timeout = Assert.Throws<TimeoutException>(() => workers.Run(part =>
        {
            if (part == 1) release.Wait(TimeSpan.FromSeconds(30)); // a stuck helper
        }));
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.25, 10);
        Assert.Equal("1 of 1 split helpers had not finished their part of a product 0.3 s after this thread finished its own; the step fails rather than wait for ever", timeout.Message);
        // The helper is still in that product: the workers refuse the next one rather than mix the two up.
        var refused = Assert.Throws<InvalidOperationException>(() => workers.Run(_ => { }));
        Assert.StartsWith("the split helpers of this rank are unusable: 1 of 1 split helpers", refused.Message);
        release.Set();
    }
}
