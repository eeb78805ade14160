using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ActorRing.Transport.Tests;

/// <summary>
/// Random and mutated input, bounded in time, for the ring's frame header parser and its handshake: nothing but
/// the typed protocol errors may come out, and nothing may hang.
/// </summary>
public sealed class FuzzTests
{
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(2);

    [Fact]
    public void The_frame_header_parser_reads_any_16_bytes_and_names_every_difference()
    {
        var rng = new Random(1234);
        var expected = new FrameHeader(OpCode.AllReduce, (byte)DType.F32, 4, Seq: 7, Index: 0, Length: 4096);
        Span<byte> valid = stackalloc byte[FrameHeader.Size];
        expected.Write(valid);
        var bytes = new byte[FrameHeader.Size];
        int runs = 0, mismatches = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Budget || runs < 10_000)
        {
            if (runs % 2 == 0) rng.NextBytes(bytes);
            else
            {
                valid.CopyTo(bytes);
                for (int flips = rng.Next(1, 4); flips > 0; flips--) bytes[rng.Next(bytes.Length)] ^= (byte)(1 << rng.Next(8));
            }
            bool marker = FrameHeader.TryRead(bytes, out var got);
            Assert.Equal(bytes[0] == FrameHeader.Marker, marker);
            var difference = expected.Mismatch(got);
            if (difference is not null) mismatches++;
            // A header that matches is exactly the expected one: no corrupted frame passes as valid.
            else Assert.Equal(expected, got);
            runs++;
        }
        Assert.True(mismatches > runs / 2, $"{mismatches} of {runs} inputs differed");
    }

    [Fact]
    public async Task The_listener_handshake_survives_random_and_mutated_peers_with_typed_errors_only()
    {
        var rng = new Random(4321);
        byte[] secret = RingHarness.Secret;
        // A valid dialer hello (rank 1 of 2, dialling rank 0) as the seed for mutations.
        var hello = new byte[48];
        BinaryPrimitives.WriteUInt32BigEndian(hello, Handshake.Magic);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(4), Handshake.Version);
        hello[6] = (byte)'C';
        BinaryPrimitives.WriteInt32BigEndian(hello.AsSpan(8), 2);
        BinaryPrimitives.WriteInt32BigEndian(hello.AsSpan(12), 1);

        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        int runs = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Budget || runs < 200)
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(listener.LocalEndPoint!);
            using var server = await listener.AcceptAsync();
            byte[] input = (runs % 3) switch
            {
                0 => RandomBytes(rng, rng.Next(0, 200)),
                1 => Mutate(rng, [.. hello, (byte)'P', .. RandomBytes(rng, 32)]),
                _ => [.. Mutate(rng, hello), .. RandomBytes(rng, rng.Next(0, 64))],
            };
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            var handshake = Handshake.RunAsync(server, dialer: false, rank: 0, worldSize: 2, expectedPeerRank: 1, secret, cts.Token);
            try
            {
                await client.SendAsync(input);
                client.Shutdown(SocketShutdown.Send); // the peer says no more: the listener must not wait for ever
            }
            catch (SocketException)
            {
                // The listener refused and closed first.
            }
            var error = await Record.ExceptionAsync(() => handshake.WaitAsync(TimeSpan.FromSeconds(5)));
            // Without the secret nobody gets in, and only the protocol's own errors come out.
            Assert.NotNull(error);
            Assert.True(error is Handshake.RefusedException or SocketException or OperationCanceledException,
                $"input {Convert.ToHexString(input)} raised {error}");
            runs++;
        }
    }

    private static byte[] RandomBytes(Random rng, int length)
    {
        var b = new byte[length];
        rng.NextBytes(b);
        return b;
    }

    private static byte[] Mutate(Random rng, byte[] seed)
    {
        var b = (byte[])seed.Clone();
        for (int flips = rng.Next(1, 4); flips > 0; flips--) b[rng.Next(b.Length)] ^= (byte)(1 << rng.Next(8));
        return rng.Next(4) == 0 ? b[..rng.Next(b.Length)] : b;
    }
}
