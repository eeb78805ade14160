using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using ActorRing.Transport;

namespace ActorRing.Transport.Tests;

/// <summary>
/// Rank 0 of a 2-ring waits for its left neighbour (rank 1) while impostors knock on its port first. Each
/// impostor must be refused with a logged reason, and the real rank 1 must still get in afterwards.
/// </summary>
public class HandshakeTests
{
    private static async Task<(Task<RingCommunicator> Rank0, RingConfig[] Configs, ListLogger Log)> StartRank0()
    {
        var configs = RingConfig.ForLoopback(2).ToArray();
        var log = new ListLogger();
        var rank0 = RingCommunicator.ConnectAsync(configs[0], RingHarness.Options(), log, CancellationToken.None);
        await WaitListening(configs[0].Port);
        return (rank0, configs, log);
    }

    private static async Task WaitListening(int port)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await probe.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException) when (sw.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(20);
            }
        }
    }

    /// <summary>Runs our own handshake code as an impostor dialling rank 0, with the given identity.</summary>
    private static async Task<Exception> Impostor(int port, int rank, int worldSize, byte[] secret)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(IPAddress.Loopback, port);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        return await Assert.ThrowsAnyAsync<Exception>(() =>
            Handshake.RunAsync(s, dialer: true, rank, worldSize, expectedPeerRank: 0, secret, cts.Token));
    }

    private static async Task RealRank1JoinsAndRingWorks(Task<RingCommunicator> rank0Task, RingConfig config1)
    {
        var rank1Task = RingCommunicator.ConnectAsync(config1, RingHarness.Options(), null, CancellationToken.None);
        var ranks = await Task.WhenAll(rank0Task, rank1Task).WaitAsync(TimeSpan.FromSeconds(60));
        try
        {
            var results = new float[2][];
            RingHarness.OnAllRanks(ranks, c =>
            {
                var v = new float[] { c.Rank + 1, 10 };
                c.AllReduceSum(v);
                results[c.Rank] = v;
            });
            Assert.Equal([3f, 20f], results[0]);
            Assert.Equal([3f, 20f], results[1]);
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    [Fact]
    public async Task WrongSecretIsRefusedAndRightPeerStillGetsIn()
    {
        var (rank0, configs, log) = await StartRank0();
        var e = await Impostor(configs[0].Port, rank: 1, worldSize: 2, Encoding.UTF8.GetBytes("guessed-secret"));
        var refused = Assert.IsType<Handshake.RefusedException>(e);
        Assert.True(refused.ByPeer);
        Assert.Contains("wrong cluster secret", refused.Message);
        Assert.False(rank0.IsCompleted);
        Assert.True(await log.WaitFor("wrong cluster secret"), string.Join("\n", log.Lines));
        await RealRank1JoinsAndRingWorks(rank0, configs[1]);
    }

    [Fact]
    public async Task WrongRankIsRefusedAndRightPeerStillGetsIn()
    {
        var (rank0, configs, log) = await StartRank0();
        var e = await Impostor(configs[0].Port, rank: 0, worldSize: 2, RingHarness.Secret);
        Assert.Contains("peer is rank 0, expected rank 1", e.Message);
        Assert.True(await log.WaitFor("peer is rank 0, expected rank 1"), string.Join("\n", log.Lines));
        Assert.False(rank0.IsCompleted);
        await RealRank1JoinsAndRingWorks(rank0, configs[1]);
    }

    [Fact]
    public async Task WrongWorldSizeIsRefusedAndRightPeerStillGetsIn()
    {
        var (rank0, configs, log) = await StartRank0();
        var e = await Impostor(configs[0].Port, rank: 1, worldSize: 3, RingHarness.Secret);
        // Both sides check the hello at once; either may be first to refuse.
        Assert.Contains("world_size", e.Message);
        Assert.True(await log.WaitFor("peer has world_size 3, expected 2"), string.Join("\n", log.Lines));
        await RealRank1JoinsAndRingWorks(rank0, configs[1]);
    }

    [Fact]
    public async Task GarbageAndSilentStraysCannotTakeTheSlot()
    {
        var (rank0, configs, log) = await StartRank0();
        // A stray speaking another protocol is refused on the magic number.
        using (var garbage = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await garbage.ConnectAsync(IPAddress.Loopback, configs[0].Port);
            await garbage.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n-----------------------"));
            Assert.True(await log.WaitFor("not an ActorRing ring peer"), string.Join("\n", log.Lines));
        }
        // A stray that connects and says nothing holds only its own handshake (10 s timeout), not the slot:
        // the real neighbour is admitted while it is still connected.
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await silent.ConnectAsync(IPAddress.Loopback, configs[0].Port);
        var joinTime = Stopwatch.StartNew();
        await RealRank1JoinsAndRingWorks(rank0, configs[1]);
        Assert.True(joinTime.Elapsed < TimeSpan.FromSeconds(9), $"join took {joinTime.Elapsed}, so the silent stray blocked it");
    }

    [Fact]
    public async Task TheListenerProvesNothingBeforeTheDialerHasProvedTheSecret()
    {
        var (rank0, configs, log) = await StartRank0();
        // A stranger that knows the protocol and rank 0's identity, but not the secret.
        byte[] hello = new byte[48];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(hello, Handshake.Magic);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(4), Handshake.Version);
        hello[6] = (byte)'C';
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(hello.AsSpan(8), 2);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(hello.AsSpan(12), 1);
        using (var stranger = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await stranger.ConnectAsync(IPAddress.Loopback, configs[0].Port);
            await stranger.SendAsync(hello);
            // After the hello it waits: the listener must not volunteer a proof the stranger could attack offline.
            var received = await ReadFor(stranger, TimeSpan.FromSeconds(1));
            Assert.Equal(48, received.Length); // rank 0's hello only
            await stranger.SendAsync((byte[])[(byte)'P', .. new byte[32]]);
            received = await ReadFor(stranger, TimeSpan.FromSeconds(3));
            Assert.Equal((byte)'R', received[0]); // a refusal, not a proof
            Assert.Equal("wrong cluster secret (HMAC proof does not verify)", Encoding.UTF8.GetString(received.AsSpan(3)));
        }
        Assert.True(await log.WaitFor("wrong cluster secret"), string.Join("\n", log.Lines));
        await RealRank1JoinsAndRingWorks(rank0, configs[1]);
    }

    /// <summary>Everything the peer sends within <paramref name="window"/> (or until it closes).</summary>
    private static async Task<byte[]> ReadFor(Socket s, TimeSpan window)
    {
        using var cts = new CancellationTokenSource(window);
        var all = new MemoryStream();
        var buf = new byte[512];
        try
        {
            int n;
            while ((n = await s.ReceiveAsync(buf, SocketFlags.None, cts.Token)) > 0) all.Write(buf, 0, n);
        }
        catch (OperationCanceledException)
        {
            // The window is over.
        }
        return all.ToArray();
    }

    [Fact]
    public async Task SecretNeverCrossesTheWire()
    {
        // Act as rank 0's right neighbour (rank 1) and record every byte rank 0 sends while dialling us.
        var configs = RingConfig.ForLoopback(2);
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, configs[1].Port));
        listener.Listen();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var rank0 = RingCommunicator.ConnectAsync(configs[0], RingHarness.Options() with { ConnectTimeout = TimeSpan.FromSeconds(3) }, null, cts.Token);
        using var s = await listener.AcceptAsync(cts.Token);
        var recorder = new RecordingSocketPump(s);
        // Play the listener's part honestly so the dialler gets as far as sending its proof and verdict.
        await Assert.ThrowsAnyAsync<Exception>(() => recorder.RunListenerHandshake(RingHarness.Secret, cts.Token));
        byte[] seen = recorder.Received.ToArray();
        Assert.True(seen.Length >= 48 + 33, $"only {seen.Length} bytes recorded");
        Assert.Equal(-1, seen.AsSpan().IndexOf(RingHarness.Secret));
        await Assert.ThrowsAsync<RingFormationException>(() => rank0);
    }

    /// <summary>Runs the real listener-side handshake on a socket while keeping a copy of what it received.</summary>
    private sealed class RecordingSocketPump(Socket socket)
    {
        public MemoryStream Received { get; } = new();

        public async Task RunListenerHandshake(byte[] secret, CancellationToken ct)
        {
            // Relay through a socket pair so Handshake reads from our copy.
            using var inner = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            using var relayListener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            relayListener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            relayListener.Listen();
            await inner.ConnectAsync(relayListener.LocalEndPoint!, ct);
            using var relay = await relayListener.AcceptAsync(ct);
            var up = Pump(socket, relay, Received, ct);
            var down = Pump(relay, socket, null, ct);
            try
            {
                // Rank 1 as listener; rank 0 (the dialler) must be its left neighbour. The handshake
                // completes, then the ring never forms because we never dial rank 0 back.
                await Handshake.RunAsync(inner, dialer: false, rank: 1, worldSize: 2, expectedPeerRank: 0, secret, ct);
                await Task.Delay(200, ct);
            }
            finally
            {
                inner.Dispose();
            }
            throw new InvalidOperationException("handshake done");
        }

        private static async Task Pump(Socket from, Socket to, MemoryStream? copy, CancellationToken ct)
        {
            var buf = new byte[4096];
            try
            {
                while (true)
                {
                    int n = await from.ReceiveAsync(buf, SocketFlags.None, ct);
                    if (n == 0) return;
                    lock (buf) copy?.Write(buf, 0, n);
                    await to.SendAsync(buf.AsMemory(0, n), SocketFlags.None, ct);
                }
            }
            catch (Exception)
            {
                // The test only cares about what was copied.
            }
        }
    }
}
