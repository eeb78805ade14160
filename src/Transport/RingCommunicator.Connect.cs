using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorRing.Transport;

public sealed partial class RingCommunicator
{
    /// <summary>
    /// Forms the ring: listens on <see cref="RingConfig.Port"/> for the left neighbour while dialling the
    /// right one (with backoff), both until <see cref="RingOptions.ConnectTimeout"/>, so ranks may start in
    /// any order. Each socket is authenticated (<see cref="Handshake"/>). World size 1 opens no sockets.
    /// </summary>
    /// <exception cref="RingFormationException">Deadline passed, or the port cannot be bound.</exception>
    public static async Task<RingCommunicator> ConnectAsync(RingConfig config, RingOptions options, ILogger? logger,
        CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        var log = logger ?? NullLogger.Instance;
        if (config.WorldSize == 1) return new RingCommunicator(config, options, log, null, null);
        if (options.ClusterSecret.Length == 0)
        {
            throw new RingFormationException(
                $"no cluster secret for rank {config.Rank}: set {RingOptions.SecretEnvironmentVariable} " +
                "(the same value on every rank) or RingOptions.ClusterSecret");
        }

        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        if (options.BindAddress.AddressFamily == AddressFamily.InterNetworkV6)
        {
            listener.Dispose();
            listener = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
        }
        try
        {
            // Lets a re-formed ring rebind while old connections sit in TIME_WAIT.
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.ReceiveBufferSize = options.SocketBufferBytes; // inherited by accepted sockets
            listener.Bind(new IPEndPoint(options.BindAddress, config.Port));
            listener.Listen(16);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new RingFormationException(
                $"{config.SourcePath}: field 'port': cannot listen on {options.BindAddress}:{config.Port} ({e.SocketErrorCode}: {e.Message})", e);
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(options.ConnectTimeout);
        var leftState = new FormationState();
        var rightState = new FormationState();
        var accept = AcceptLeftAsync(listener, config, options, log, leftState, deadline.Token);
        var dial = DialRightAsync(config, options, log, rightState, deadline.Token);
        try
        {
            // Task.WhenAny never throws, so a failure on either side is inspected below, not raised here.
            var first = await Task.WhenAny(accept, dial).ConfigureAwait(false);
            if (first.IsCompletedSuccessfully) await Task.WhenAny(first == accept ? dial : accept).ConfigureAwait(false);
        }
        finally
        {
            listener.Dispose();
        }

        if (accept.IsCompletedSuccessfully && dial.IsCompletedSuccessfully)
        {
            log.LogInformation("ring rank {Rank}/{WorldSize} formed: left rank {Left} from {LeftEp}, right rank {Right} at {RightEp}",
                config.Rank, config.WorldSize, config.LeftRank, accept.Result.RemoteEndPoint, config.RightRank, dial.Result.RemoteEndPoint);
            return new RingCommunicator(config, options, log, accept.Result, dial.Result);
        }

        // One side failed or the deadline passed: stop the other side and release whatever it holds.
        deadline.Cancel();
        await Task.WhenAll(accept.ContinueWith(_ => { }, TaskScheduler.Default), dial.ContinueWith(_ => { }, TaskScheduler.Default)).ConfigureAwait(false);
        if (accept.IsCompletedSuccessfully) accept.Result.Dispose();
        if (dial.IsCompletedSuccessfully) dial.Result.Dispose();
        ct.ThrowIfCancellationRequested();

        var problems = new List<string>();
        if (!dial.IsCompletedSuccessfully)
        {
            problems.Add($"could not join right neighbour rank {config.RightRank} at {config.RightDialHost}:{config.RightPort}" +
                         (rightState.LastError is null ? "" : $" (last error: {rightState.LastError})"));
        }
        if (!accept.IsCompletedSuccessfully)
        {
            problems.Add($"left neighbour rank {config.LeftRank} did not join on port {config.Port}" +
                         (leftState.LastError is null ? "" : $" (last refusal: {leftState.LastError})"));
        }
        var inner = (accept.Exception ?? dial.Exception)?.InnerException;
        if (inner is RingFormationException rfe) throw rfe;
        throw new RingFormationException(
            $"rank {config.Rank}/{config.WorldSize} ({config.SourcePath}): ring not formed within {options.ConnectTimeout.TotalSeconds:0.#} s: " +
            string.Join("; ", problems), inner);
    }

    private sealed class FormationState
    {
        public volatile string? LastError;
    }

    private static void ConfigureDataSocket(Socket s, RingOptions options)
    {
        s.NoDelay = true;
        s.SendBufferSize = options.SocketBufferBytes;
        s.ReceiveBufferSize = options.SocketBufferBytes;
    }

    private static async Task<Socket> AcceptLeftAsync(Socket listener, RingConfig config, RingOptions options, ILogger log,
        FormationState state, CancellationToken ct)
    {
        // Handshakes run concurrently: a stray that connects and then stays silent occupies only its own
        // task until the handshake timeout, never the slot, and the real neighbour is admitted meanwhile.
        var winner = new TaskCompletionSource<Socket>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stopAccepting = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var reg = ct.Register(() => winner.TrySetCanceled(ct));
        var handshakes = new List<Task>();
        var acceptLoop = Task.Run(async () =>
        {
            while (!stopAccepting.IsCancellationRequested)
            {
                Socket s;
                try
                {
                    s = await listener.AcceptAsync(stopAccepting.Token).ConfigureAwait(false);
                }
                catch (Exception) when (stopAccepting.IsCancellationRequested)
                {
                    return;
                }
                catch (SocketException e)
                {
                    // E.g. out of file descriptors: back off instead of spinning on a listener that keeps failing.
                    log.LogWarning("rank {Rank}: accept failed: {Error}", config.Rank, e.Message);
                    try
                    {
                        await Task.Delay(100, stopAccepting.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                    continue;
                }
                lock (handshakes) handshakes.Add(HandshakeLeftAsync(s));
            }
        }, CancellationToken.None);

        async Task HandshakeLeftAsync(Socket s)
        {
            var remote = s.RemoteEndPoint;
            using var hsTimeout = CancellationTokenSource.CreateLinkedTokenSource(stopAccepting.Token);
            hsTimeout.CancelAfter(options.HandshakeTimeout);
            try
            {
                ConfigureDataSocket(s, options);
                await Handshake.RunAsync(s, dialer: false, config.Rank, config.WorldSize, config.LeftRank,
                    options.ClusterSecret, hsTimeout.Token).ConfigureAwait(false);
                if (!winner.TrySetResult(s)) s.Dispose();
                return;
            }
            catch (Handshake.RefusedException e)
            {
                state.LastError = $"{remote}: {e.Message}";
                log.LogWarning("rank {Rank}: refused connection from {Remote} on port {Port}: {Reason}; still waiting for rank {Left}",
                    config.Rank, remote, config.Port, e.Message, config.LeftRank);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                if (!stopAccepting.IsCancellationRequested)
                {
                    string reason = e is OperationCanceledException
                        ? $"no complete handshake within {options.HandshakeTimeout.TotalSeconds:0.#} s"
                        : e.Message;
                    state.LastError = $"{remote}: {reason}";
                    log.LogWarning("rank {Rank}: dropped connection from {Remote}: {Reason}; still waiting for rank {Left}",
                        config.Rank, remote, reason, config.LeftRank);
                }
            }
            s.Dispose();
        }

        try
        {
            return await winner.Task.ConfigureAwait(false);
        }
        finally
        {
            stopAccepting.Cancel();
            await acceptLoop.ConfigureAwait(false);
            Task[] pending;
            lock (handshakes) pending = handshakes.ToArray();
            await Task.WhenAll(pending).ConfigureAwait(false);
        }
    }

    private static async Task<Socket> DialRightAsync(RingConfig config, RingOptions options, ILogger log,
        FormationState state, CancellationToken ct)
    {
        var backoff = TimeSpan.FromMilliseconds(20);
        var sinceLog = Stopwatch.StartNew();
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                ConfigureDataSocket(s, options);
                using var hsTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                hsTimeout.CancelAfter(options.HandshakeTimeout);
                await s.ConnectAsync(config.RightDialHost, config.RightPort, hsTimeout.Token).ConfigureAwait(false);
                await Handshake.RunAsync(s, dialer: true, config.Rank, config.WorldSize, config.RightRank,
                    options.ClusterSecret, hsTimeout.Token).ConfigureAwait(false);
                return s;
            }
            catch (Handshake.RefusedException e)
            {
                s.Dispose();
                state.LastError = e.Message;
                // A wrong process on that port may be replaced by the right one, so keep trying until the deadline.
                log.LogWarning("rank {Rank}: handshake with {Host}:{Port} failed: {Reason}; retrying",
                    config.Rank, config.RightDialHost, config.RightPort, e.Message);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                s.Dispose();
                ct.ThrowIfCancellationRequested();
                state.LastError = e is SocketException se ? $"{se.SocketErrorCode}: {se.Message}" : "handshake timed out";
                // Connection refused is the normal state while the neighbour is still starting; log it rarely.
                if (sinceLog.Elapsed > TimeSpan.FromSeconds(10))
                {
                    log.LogInformation("rank {Rank}: still waiting for right neighbour rank {Right} at {Host}:{Port} ({Error})",
                        config.Rank, config.RightRank, config.RightDialHost, config.RightPort, state.LastError);
                    sinceLog.Restart();
                }
            }
            await Task.Delay(backoff, ct).ConfigureAwait(false);
            backoff = TimeSpan.FromMilliseconds(Math.Min(backoff.TotalMilliseconds * 2, 500));
        }
    }
}
