using System.Threading.Channels;
using Akka.Actor;

namespace ActorRing.Actors.Client;

/// <summary>
/// In-process access to rank 0's coordinator for the CLI (and later the HTTP front end): submits a request and
/// streams its tokens as an async sequence. Each request gets a short-lived receiver actor that writes the
/// coordinator's replies into a channel, so the caller never blocks an actor thread.
/// </summary>
public sealed class CoordinatorClient(ActorSystem system, IActorRef coordinator)
{
    /// <summary>Cancelled once the actor system has terminated: rank 0 is stopping (SIGTERM runs Akka's coordinated
    /// shutdown before the web server's), so no reply can come any more.</summary>
    private readonly CancellationToken _systemDown = Terminated(system);

    private static CancellationToken Terminated(ActorSystem system)
    {
        var down = new CancellationTokenSource();
        system.WhenTerminated.ContinueWith(_ => down.Cancel(), TaskScheduler.Default);
        return down.Token;
    }

    public async Task<ClusterStatus> StatusAsync(TimeSpan timeout, CancellationToken cancellationToken = default) =>
        await coordinator.Ask<ClusterStatus>(GetClusterStatus.Instance, timeout, cancellationToken);

    /// <summary>Tells every rank to stop (their hosts exit) and waits for the coordinator's acknowledgement.</summary>
    public async Task ShutdownAsync(string reason, TimeSpan timeout) =>
        await coordinator.Ask<ClusterStatus>(new ShutdownCluster(reason), timeout);

    /// <summary>Rank 0 is stopping on its own: tells the other ranks, which stay up for its next start, and waits until
    /// they have heard it (the coordinator gives up on a silent rank after a few seconds).</summary>
    public async Task LeaveAsync(string reason, TimeSpan timeout) =>
        await coordinator.Ask<ClusterStatus>(new LeaveCluster(reason), timeout);

    /// <summary>Waits until every rank is registered, the ring is formed and the shards are loaded; reports each
    /// change of status (e.g. "loading: rank 0 40%, rank 1 35%") while waiting.</summary>
    public async Task WaitReadyAsync(TimeSpan timeout, Action<ClusterStatus>? onChange, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        string last = "";
        while (true)
        {
            ClusterStatus status;
            try
            {
                status = await StatusAsync(TimeSpan.FromSeconds(5), deadline.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"the cluster was not ready within {timeout.TotalSeconds:0} s (last status: {last})");
            }
            if (status.Phase == nameof(Coordinator.Phase.Failed)) throw new InvalidOperationException(status.Detail);
            if (status.Detail != last)
            {
                last = status.Detail;
                onChange?.Invoke(status);
            }
            if (status.Ready) return;
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(250), deadline.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"the cluster was not ready within {timeout.TotalSeconds:0} s (last status: {last})");
            }
        }
    }

    /// <summary>
    /// Streams <see cref="TokenGenerated"/> events and ends with one <see cref="GenerationCompleted"/> or
    /// <see cref="GenerationFailed"/>. Cancelling the token asks the coordinator to stop after the current step.
    /// If nothing arrives for <paramref name="idleTimeout"/> (default 10 minutes: a request can wait for a rank
    /// to come back), the request is cancelled and the stream ends with a <see cref="GenerationFailed"/>.
    /// </summary>
    public async IAsyncEnumerable<IControlMessage> GenerateAsync(GenerateRequest request,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default,
        TimeSpan? idleTimeout = null)
    {
        var idle = idleTimeout ?? TimeSpan.FromMinutes(10);
        var channel = Channel.CreateUnbounded<IControlMessage>(new UnboundedChannelOptions { SingleReader = true });
        var receiver = system.ActorOf(Props.Create(() => new Receiver(channel.Writer, request.RequestId)));
        await using var cancel = cancellationToken.Register(() => coordinator.Tell(new CancelGeneration(request.RequestId)));
        // The caller hears of rank 0's stop now, not when the host's shutdown timeout cuts its connection.
        await using var down = _systemDown.Register(() =>
        {
            channel.Writer.TryWrite(new GenerationFailed(request.RequestId, "rank 0 is shutting down; the request was not finished"));
            channel.Writer.TryComplete();
        });
        try
        {
            coordinator.Tell(request, receiver);
            while (true)
            {
                bool more;
                using (var wait = new CancellationTokenSource(idle))
                {
                    try
                    {
                        more = await channel.Reader.WaitToReadAsync(wait.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        coordinator.Tell(new CancelGeneration(request.RequestId));
                        more = false;
                        channel.Writer.TryWrite(new GenerationFailed(request.RequestId,
                            $"no answer from the coordinator for {idle.TotalSeconds:0} s; the request was cancelled (check the cluster status: are all ranks up?)"));
                        channel.Writer.TryComplete();
                    }
                }
                while (channel.Reader.TryRead(out var message))
                {
                    yield return message;
                    if (message is GenerationCompleted or GenerationFailed) yield break;
                }
                if (!more) yield break;
            }
        }
        finally
        {
            system.Stop(receiver);
        }
    }

    private sealed class Receiver : ReceiveActor
    {
        public Receiver(ChannelWriter<IControlMessage> writer, string requestId)
        {
            Receive<TokenGenerated>(t => t.RequestId == requestId, t => writer.TryWrite(t));
            Receive<GenerationCompleted>(c => c.RequestId == requestId, c =>
            {
                writer.TryWrite(c);
                writer.TryComplete();
            });
            Receive<GenerationFailed>(f => f.RequestId == requestId, f =>
            {
                writer.TryWrite(f);
                writer.TryComplete();
            });
        }
    }
}
