using ActorRing.Host.Generation;

namespace ActorRing.Host.Tests;

public sealed class FairQueueTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Turns_go_in_arrival_order_one_at_a_time()
    {
        var queue = new FairQueue(1);
        var first = await queue.EnterAsync(CancellationToken.None);
        var waiting = Enumerable.Range(0, 5).Select(_ => queue.EnterAsync(CancellationToken.None)).ToList();
        Assert.Equal(1, queue.Running);
        Assert.Equal(5, queue.Waiting);

        first.Dispose();
        for (int i = 0; i < 5; i++)
        {
            var turn = await waiting[i].WaitAsync(Deadline);
            // Only the head of the line has its turn; everyone behind it still waits.
            Assert.All(waiting.Skip(i + 1), w => Assert.False(w.IsCompleted));
            Assert.Equal(1, queue.Running);
            Assert.Equal(4 - i, queue.Waiting);
            turn.Dispose();
        }
        Assert.Equal(0, queue.Running);
    }

    [Fact]
    public async Task A_waiter_that_gives_up_leaves_the_queue_without_taking_a_turn()
    {
        var queue = new FairQueue(1);
        var running = await queue.EnterAsync(CancellationToken.None);
        using var gone = new CancellationTokenSource();
        var abandoned = queue.EnterAsync(gone.Token);
        var next = queue.EnterAsync(CancellationToken.None);
        Assert.Equal(2, queue.Waiting);

        gone.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned.WaitAsync(Deadline));
        Assert.Equal(1, queue.Waiting);

        running.Dispose();
        using var turn = await next.WaitAsync(Deadline); // straight to the next one, not the abandoned one
        Assert.Equal(1, queue.Running);
        Assert.Equal(0, queue.Waiting);
        running.Dispose(); // a second dispose is harmless
        Assert.Equal(1, queue.Running);
    }
}
