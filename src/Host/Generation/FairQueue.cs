namespace ActorRing.Host.Generation;

/// <summary>
/// First come, first served admission of requests to the coordinator, <see cref="Capacity"/> at a time. A
/// waiter that gives up (its client went away) leaves the queue without taking a turn, so a disconnected
/// client never delays the ones behind it.
/// </summary>
public sealed class FairQueue(int capacity)
{
    private readonly object _lock = new();
    private readonly LinkedList<TaskCompletionSource<Turn>> _waiting = new();
    private int _running;

    public int Capacity { get; } = capacity >= 1 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "capacity must be >= 1");

    public int Running { get { lock (_lock) return _running; } }

    public int Waiting { get { lock (_lock) return _waiting.Count; } }

    /// <summary>Waits for this request's turn; disposing the turn lets the next one in.</summary>
    public async Task<Turn> EnterAsync(CancellationToken cancellationToken)
    {
        LinkedListNode<TaskCompletionSource<Turn>> node;
        lock (_lock)
        {
            if (_running < Capacity && _waiting.Count == 0)
            {
                _running++;
                return new Turn(this);
            }
            node = _waiting.AddLast(new TaskCompletionSource<Turn>(TaskCreationOptions.RunContinuationsAsynchronously));
        }
        await using var registration = cancellationToken.Register(() =>
        {
            lock (_lock)
            {
                // A granted turn is already off the list; the caller then receives it and must release it.
                if (node.List is null) return;
                _waiting.Remove(node);
            }
            node.Value.TrySetCanceled(cancellationToken);
        });
        return await node.Value.Task;
    }

    private void Leave()
    {
        TaskCompletionSource<Turn>? next = null;
        lock (_lock)
        {
            if (_waiting.First is { } first)
            {
                _waiting.RemoveFirst();
                next = first.Value; // the turn passes on: _running stays the same
            }
            else
            {
                _running--;
            }
        }
        next?.SetResult(new Turn(this));
    }

    public sealed class Turn(FairQueue queue) : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0) queue.Leave();
        }
    }
}
