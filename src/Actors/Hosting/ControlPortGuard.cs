using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace ActorRing.Actors.Hosting;

/// <summary>Limits of <see cref="ControlPortGuard"/>.</summary>
/// <param name="MaxUnregistered">Connections from peers that have not registered, at once; more are closed at accept.</param>
/// <param name="UnregisteredTimeout">An unregistered peer's connection is closed after this long (a real worker
/// registers within a second or two of connecting; a refused one reconnects).</param>
/// <param name="UnregisteredFrameLimit">Largest frame an unregistered peer may send: registration messages and
/// Akka's own handshake are a few hundred bytes.</param>
/// <param name="FrameCompletion">An unregistered peer must finish each frame it starts within this (slow-loris).</param>
/// <param name="MaxFrame">Largest frame anyone may send (Akka's maximum-frame-size).</param>
/// <param name="Tls">When set, peers must speak TLS with the cluster's certificate: the guard ends their session
/// (within <paramref name="FrameCompletion"/>), reads the frames inside, and forwards them over its own TLS
/// session to Akka, which then runs TLS too (see <see cref="Security.ControlPlaneTls"/>).</param>
public sealed record ControlPortGuardOptions(
    int MaxUnregistered = 16,
    TimeSpan? UnregisteredTimeout = null,
    int UnregisteredFrameLimit = 64 * 1024,
    TimeSpan? FrameCompletion = null,
    int MaxFrame = 1024 * 1024,
    Security.ControlPlaneTls? Tls = null)
{
    public TimeSpan UnregisteredTimeoutOrDefault => UnregisteredTimeout ?? TimeSpan.FromSeconds(30);
    public TimeSpan FrameCompletionOrDefault => FrameCompletion ?? TimeSpan.FromSeconds(10);
}

/// <summary>
/// The control port's front door: a TCP forwarder in front of Akka.Remote, which itself listens on loopback.
/// <para>
/// Akka.Remote's DotNetty transport accepts any number of connections and buffers a frame of up to
/// maximum-frame-size for each before anyone has proved anything; it has no setting to cap them. So a
/// stranger could hold hundreds of partial frames and grow rank 0's memory at will. The guard reads the frame
/// lengths (Akka's 4-byte little-endian prefix) and the origin address of Akka's association handshake, and
/// treats a connection as registered once its origin is a system this rank watches (rank 0 watches the workers
/// it admitted; a worker watches its coordinator). Until then the peer is held to small frames, finished in
/// time, for a bounded time, and only <see cref="ControlPortGuardOptions.MaxUnregistered"/> such peers at once.
/// Bytes are forwarded as they come, so a registered peer pays one loopback hop per message, no buffering.
/// </para>
/// <para>The origin is what the peer claims, not proof (Akka.Remote has no authentication): a stranger that
/// copies a registered worker's address gets that worker's limits. TLS with client certificates closes that.</para>
/// </summary>
public sealed class ControlPortGuard : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly IPEndPoint _akka;
    private readonly Func<string, string, int, bool> _isRegistered;
    private readonly ControlPortGuardOptions _options;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly RateLimitedLog _refusals;
    private readonly RateLimitedLog _closures;
    private Task? _acceptLoop;
    private int _unregistered;

    /// <param name="isRegistered">(system, host, port) of a claimed Akka origin: is it a registered peer?</param>
    private ControlPortGuard(Socket listener, IPEndPoint akka, Func<string, string, int, bool> isRegistered,
        ControlPortGuardOptions options, ILogger log)
    {
        _listener = listener;
        _akka = akka;
        _isRegistered = isRegistered;
        _options = options;
        _log = log;
        _refusals = new RateLimitedLog(log, TimeSpan.FromSeconds(10));
        _closures = new RateLimitedLog(log, TimeSpan.FromSeconds(10));
    }

    /// <summary>Akka's own (loopback) port, where the guard forwards.</summary>
    public int AkkaPort => _akka.Port;

    /// <summary>The port peers dial (useful when <see cref="Bind"/> was given port 0).</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    /// <summary>Connections from unregistered peers open right now.</summary>
    public int Unregistered => Volatile.Read(ref _unregistered);

    /// <summary>Binds the public port at once (so a busy port fails before anything starts, and port 0 gets its
    /// number for Akka's public address); listening starts with <see cref="Start"/>.</summary>
    public static ControlPortGuard Bind(IPEndPoint listen, IPEndPoint akka, Func<string, string, int, bool> isRegistered,
        ControlPortGuardOptions options, ILogger log)
    {
        var listener = new Socket(listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(listen);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        return new ControlPortGuard(listener, akka, isRegistered, options, log);
    }

    /// <summary>Starts listening (peers are refused until then, not queued) and accepting.</summary>
    public void Start()
    {
        if (_acceptLoop is not null) return;
        _listener.Listen(512);
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                _log.LogDebug("control port: accept failed: {Error}", e.SocketErrorCode);
                continue;
            }
            if (Interlocked.Increment(ref _unregistered) > _options.MaxUnregistered)
            {
                Interlocked.Decrement(ref _unregistered);
                _refusals.Warn($"control port: refused connections from unregistered peers (last from {client.RemoteEndPoint}): {_options.MaxUnregistered} are open already");
                client.Dispose();
                continue;
            }
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(Socket client)
    {
        var peer = client.RemoteEndPoint?.ToString() ?? "?";
        bool counted = true;
        void Registered()
        {
            if (!counted) return;
            counted = false;
            Interlocked.Decrement(ref _unregistered);
        }
        using var upstream = new Socket(_akka.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        client.NoDelay = true;
        Stream? fromPeer = null, toAkka = null;
        try
        {
            fromPeer = new NetworkStream(client, ownsSocket: false);
            // With TLS the peer proves it holds the cluster's certificate before Akka hears of the connection.
            if (_options.Tls is { } tls)
            {
                string? refusal;
                (fromPeer, refusal) = await AcceptTlsAsync(tls, client, fromPeer, cts.Token);
                if (refusal is not null)
                {
                    _closures.Warn($"control port: closed the connection from {peer}: {refusal}");
                    return;
                }
            }
            using (var connect = CancellationTokenSource.CreateLinkedTokenSource(cts.Token))
            {
                connect.CancelAfter(TimeSpan.FromSeconds(5));
                await upstream.ConnectAsync(_akka, connect.Token);
                toAkka = new NetworkStream(upstream, ownsSocket: false);
                if (_options.Tls is { } toAkkaTls)
                {
                    var akkaTls = new SslStream(toAkka, leaveInnerStreamOpen: false);
                    toAkka = akkaTls;
                    await akkaTls.AuthenticateAsClientAsync(toAkkaTls.ClientOptions(), connect.Token);
                }
            }
            var inbound = PumpInboundAsync(fromPeer, toAkka, peer, Registered, cts.Token);
            var outbound = PumpOutboundAsync(toAkka, fromPeer, cts.Token);
            await Task.WhenAny(inbound, outbound);
            cts.Cancel();
            if (inbound.IsCompleted && await inbound is { } reason) _closures.Warn($"control port: closed the connection from {peer}: {reason}");
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException or IOException or AuthenticationException)
        {
            _log.LogDebug("control port: connection from {Peer} ended: {Error}", peer, e.Message);
        }
        finally
        {
            Registered(); // no longer open, so no longer counted
            if (fromPeer is not null) await fromPeer.DisposeAsync();
            if (toAkka is not null) await toAkka.DisposeAsync();
            client.Dispose();
        }
    }

    /// <summary>
    /// The peer's TLS session, this side the server, the peer's certificate required and pinned. The peer's first
    /// bytes are looked at before: a rank started without <c>--tls-cert</c> sends an Akka frame where a TLS record
    /// belongs, and is told so. Returns the decrypted stream, or why the peer was refused.
    /// </summary>
    private async Task<(Stream Peer, string? Refusal)> AcceptTlsAsync(Security.ControlPlaneTls tls, Socket client, Stream fromPeer, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(_options.FrameCompletionOrDefault);
        var head = new byte[3];
        int seen = 0;
        try
        {
            while (seen < head.Length)
            {
                seen = await client.ReceiveAsync(head, SocketFlags.Peek, deadline.Token);
                if (seen == 0) return (fromPeer, "it closed before saying anything");
                if (seen < head.Length) await Task.Delay(20, deadline.Token);
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return (fromPeer, $"it sent no TLS handshake within {_options.FrameCompletionOrDefault.TotalSeconds:0} s");
        }
        if (!LooksLikeTls(head))
            return (fromPeer, "it does not speak TLS, and this rank's control plane requires it; start every rank with the same --tls-cert");
        string? certificateRefusal = null;
        var peerTls = new SslStream(fromPeer, leaveInnerStreamOpen: false);
        try
        {
            await peerTls.AuthenticateAsServerAsync(tls.ServerOptions(reason => certificateRefusal = reason), deadline.Token);
        }
        catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException && !ct.IsCancellationRequested)
        {
            return (peerTls, $"TLS handshake failed: {certificateRefusal ?? (e is OperationCanceledException ? $"not finished within {_options.FrameCompletionOrDefault.TotalSeconds:0} s" : e.Message)}");
        }
        return (peerTls, null);
    }

    /// <summary>A TLS record starts with its content type (22, handshake) and major version 3.</summary>
    internal static bool LooksLikeTls(ReadOnlySpan<byte> head) => head.Length >= 2 && head[0] == 0x16 && head[1] == 0x03;

    /// <summary>Peer to Akka, frame by frame as far as lengths go. Returns why the connection was cut, or null
    /// when the peer or Akka simply closed it.</summary>
    private async Task<string?> PumpInboundAsync(Stream from, Stream to, string peer, Action registered, CancellationToken ct)
    {
        // Not pooled: a read may still be outstanding when this returns and the connection is torn down.
        var buffer = new byte[16 * 1024];
        var frames = new FrameCursor();
        (string System, string Host, int Port)? origin = null;
        bool isRegistered = false;
        var connected = DateTime.UtcNow;
        DateTime? frameStarted = null;
        // One read stays outstanding while the deadlines are checked beside it: a cancelled read could lose
        // what a TLS stream had already decrypted.
        var read = from.ReadAsync(buffer.AsMemory(0, 16 * 1024), ct).AsTask();
        while (true)
        {
            if (!isRegistered && origin is { } o && _isRegistered(o.System, o.Host, o.Port))
            {
                isRegistered = true;
                registered();
            }
            if (!isRegistered)
            {
                var now = DateTime.UtcNow;
                var left = connected + _options.UnregisteredTimeoutOrDefault - now;
                if (frameStarted is { } started) left = TimeSpan.FromTicks(Math.Min(left.Ticks, (started + _options.FrameCompletionOrDefault - now).Ticks));
                // Registration may complete while this peer is quiet (its Register is in flight): look again soon.
                var wait = TimeSpan.FromTicks(Math.Clamp(left.Ticks, 0, TimeSpan.FromSeconds(1).Ticks));
                if (await Task.WhenAny(read, Task.Delay(wait, ct)) != read)
                {
                    ct.ThrowIfCancellationRequested();
                    if (origin is { } p && _isRegistered(p.System, p.Host, p.Port)) continue;
                    now = DateTime.UtcNow;
                    if (frameStarted is { } s && now - s >= _options.FrameCompletionOrDefault)
                        return $"a frame was not completed within {_options.FrameCompletionOrDefault.TotalSeconds:0} s (the peer has not registered)";
                    if (now - connected >= _options.UnregisteredTimeoutOrDefault)
                        return $"not registered within {_options.UnregisteredTimeoutOrDefault.TotalSeconds:0} s";
                    continue;
                }
            }
            int n = await read;
            if (n == 0) return null;
            if (!frames.Started && _options.Tls is null && LooksLikeTls(buffer.AsSpan(0, n)))
                return "it speaks TLS, but this rank was started without --tls-cert; give every rank the same --tls-cert, or none";
            int limit = isRegistered ? _options.MaxFrame : _options.UnregisteredFrameLimit;
            if (frames.Advance(buffer.AsSpan(0, n), HandshakeFrameLimit, limit) is { } error) return error;
            frameStarted = frames.InFrame ? frameStarted ?? DateTime.UtcNow : null;
            if (origin is null && frames.FirstFrame is { } handshake)
            {
                origin = AkkaHandshake.Origin(handshake);
                if (origin is null) return "the first frame is not an Akka association handshake";
            }
            await to.WriteAsync(buffer.AsMemory(0, n), ct);
            await to.FlushAsync(ct);
            read = from.ReadAsync(buffer.AsMemory(0, 16 * 1024), ct).AsTask();
        }
    }

    private static async Task PumpOutboundAsync(Stream from, Stream to, CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            int n;
            while ((n = await from.ReadAsync(buffer.AsMemory(0, 64 * 1024), ct)) > 0)
            {
                await to.WriteAsync(buffer.AsMemory(0, n), ct);
                await to.FlushAsync(ct);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Akka's association handshake is a few hundred bytes; the first frame may be no larger than this.</summary>
    public const int HandshakeFrameLimit = 4096;

    private int _disposed;

    /// <summary>Stops accepting and ends every forwarded connection. Idempotent: the host's container disposes the
    /// guard again after its hosted service did.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stop.Cancel();
        _listener.Dispose();
        if (_acceptLoop is not null) await _acceptLoop;
        _stop.Dispose();
    }

    /// <summary>Tracks Akka's length-prefixed frames across reads without buffering them, except the first
    /// (the association handshake, at most <see cref="HandshakeFrameLimit"/> bytes), which is kept for its origin.</summary>
    internal sealed class FrameCursor
    {
        private readonly byte[] _header = new byte[4];
        private int _headerFilled;
        private long _payloadLeft;
        private int _frames;
        private byte[]? _first;
        private int _firstFilled;

        /// <summary>Whether any frame header has been read.</summary>
        public bool Started => _frames > 0;

        /// <summary>Whether the bytes so far end inside a frame (its header or its payload).</summary>
        public bool InFrame => _payloadLeft > 0 || _headerFilled > 0;

        /// <summary>The first frame's payload, once complete.</summary>
        public byte[]? FirstFrame => _first is not null && _firstFilled == _first.Length ? _first : null;

        /// <summary>Consumes <paramref name="data"/>; the reason when the first frame exceeds <paramref name="firstLimit"/>
        /// or a later one <paramref name="limit"/>, else null.</summary>
        public string? Advance(ReadOnlySpan<byte> data, int firstLimit, int limit)
        {
            while (data.Length > 0)
            {
                if (_payloadLeft == 0)
                {
                    int take = Math.Min(4 - _headerFilled, data.Length);
                    data[..take].CopyTo(_header.AsSpan(_headerFilled));
                    _headerFilled += take;
                    data = data[take..];
                    if (_headerFilled < 4) break;
                    _headerFilled = 0;
                    int length = BinaryPrimitives.ReadInt32LittleEndian(_header);
                    int max = _frames == 0 ? firstLimit : limit;
                    if (length < 0 || length > max)
                        return $"a frame of {length} bytes exceeds the limit of {max} bytes{(_frames == 0 ? " for the association handshake" : "")}";
                    if (_frames == 0) _first = new byte[length];
                    _payloadLeft = length;
                    _frames++;
                    continue;
                }
                int chunk = (int)Math.Min(_payloadLeft, data.Length);
                if (_frames == 1 && _first is not null && _firstFilled < _first.Length)
                {
                    data[..chunk].CopyTo(_first.AsSpan(_firstFilled));
                    _firstFilled += chunk;
                }
                _payloadLeft -= chunk;
                data = data[chunk..];
            }
            return null;
        }
    }

    /// <summary>One warning per period, with a count of what it stood for, so a flood writes a line every few seconds.</summary>
    private sealed class RateLimitedLog(ILogger log, TimeSpan period)
    {
        private DateTime _next;
        private int _suppressed;

        public void Warn(string message)
        {
            lock (this)
            {
                var now = DateTime.UtcNow;
                if (now < _next)
                {
                    _suppressed++;
                    return;
                }
                _next = now + period;
                var more = _suppressed > 0 ? $" ({_suppressed} more since the last report)" : "";
                _suppressed = 0;
                log.LogWarning("{Message}{More}", message, more);
            }
        }
    }
}
