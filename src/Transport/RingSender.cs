using System.Collections.Concurrent;

namespace ActorRing.Transport;

/// <summary>
/// The thread that writes to the right neighbour during pipelined operations, so that sending chunk k+1
/// and receiving/reducing chunk k happen at the same time and neither direction waits on the other.
/// Items point into memory the operation keeps alive (pinned or unmanaged) until <see cref="Drain"/> returns.
/// </summary>
internal sealed unsafe class RingSender : IDisposable
{
    private readonly struct Item(byte* payload, long length, FrameHeader header, OpContext op, ManualResetEventSlim? marker)
    {
        public readonly byte* Payload = payload;
        public readonly long Length = length;
        public readonly FrameHeader Header = header;
        public readonly OpContext Op = op;
        public readonly ManualResetEventSlim? Marker = marker;
    }

    private readonly PeerLink _link;
    private readonly Action _onError;
    private readonly ConcurrentQueue<Item> _queue = new();
    private readonly SemaphoreSlim _available = new(0);
    private readonly ManualResetEventSlim _drained = new(false);
    private readonly Thread _thread;
    private volatile bool _stopping;
    private volatile Exception? _error;

    public RingSender(PeerLink link, string name, Action onError)
    {
        _link = link;
        _onError = onError;
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>The first send error of the current operation; later items are dropped (it fails anyway).</summary>
    public Exception? Error => _error;

    public void ClearError() => _error = null;

    public void Enqueue(byte* payload, long length, in FrameHeader header, in OpContext op)
    {
        _queue.Enqueue(new Item(payload, length, header, op, null));
        _available.Release();
    }

    /// <summary>Waits until everything enqueued so far is on the wire (or failed), or the timeout passes.</summary>
    public bool Drain(TimeSpan timeout)
    {
        _drained.Reset();
        _queue.Enqueue(new Item(null, 0, default, default, _drained));
        _available.Release();
        return _drained.Wait(timeout);
    }

    private void Run()
    {
        while (true)
        {
            _available.Wait();
            if (_stopping) return;
            if (!_queue.TryDequeue(out var item)) continue;
            if (item.Marker is not null)
            {
                item.Marker.Set();
                continue;
            }
            if (_error is not null) continue;
            try
            {
                _link.SendFrame(item.Header, item.Payload, item.Length, item.Op);
            }
            catch (Exception e)
            {
                _error = e;
                // Wake the receiving thread too: the operation cannot complete once a send failed.
                _onError();
            }
        }
    }

    public void Dispose()
    {
        _stopping = true;
        _available.Release();
        // The owner shuts the link down first, so a thread blocked in poll returns promptly.
        _thread.Join(TimeSpan.FromSeconds(5));
    }
}
