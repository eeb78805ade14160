using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using ActorRing.Transport;

namespace ActorRing.Host.Tests;

/// <summary>Strangers on master_port: bounded memory, bounded connections, one log line, and the cluster still forms.</summary>
public sealed class ControlPortTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static double RssMb(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(Regex.Match(line, @"\d+").Value) / 1024.0;
    }

    /// <summary>Akka.Remote's association handshake claiming an origin that is no registered rank.</summary>
    private static byte[] StrangerAssociate()
    {
        static byte[] Varint(ulong v)
        {
            var bytes = new List<byte>();
            do
            {
                byte b = (byte)(v & 0x7F);
                v >>= 7;
                bytes.Add(v != 0 ? (byte)(b | 0x80) : b);
            } while (v != 0);
            return bytes.ToArray();
        }
        static byte[] Field(int number, byte[] data) => [.. Varint((ulong)(number << 3 | 2)), .. Varint((ulong)data.Length), .. data];
        byte[] origin = [.. Field(1, "stranger"u8.ToArray()), .. Field(2, "10.9.9.9"u8.ToArray()), .. Varint(3 << 3), .. Varint(1)];
        byte[] info = [.. Field(1, origin), .. Varint(2 << 3 | 1), .. new byte[8]];
        byte[] control = [.. Varint(1 << 3), .. Varint(1), .. Field(2, info)];
        byte[] message = Field(2, control);
        var frame = new byte[4 + message.Length];
        BinaryPrimitives.WriteInt32LittleEndian(frame, message.Length);
        message.CopyTo(frame, 4);
        return frame;
    }

    /// <summary>Connects, optionally associates, declares a maximal frame and sends as much of it as it may.</summary>
    private static async Task<Socket?> HoldPartialFrameAsync(int port, bool associate)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            await s.ConnectAsync(IPAddress.Loopback, port, cts.Token);
            if (associate) await s.SendAsync(StrangerAssociate(), cts.Token);
            var header = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(header, 1024 * 1024);
            await s.SendAsync(header, cts.Token);
            var chunk = new byte[64 * 1024];
            for (int sent = 0; sent < 1024 * 1024 - chunk.Length; sent += chunk.Length) await s.SendAsync(chunk, cts.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            // Refused or cut off by the guard, or the kernel's buffers are full: either way the connection holds
            // what it could.
        }
        return s;
    }

    private static async Task WaitListeningAsync(int port, RankProcess p)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await probe.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException) when (clock.Elapsed < Deadline && !p.HasExited)
            {
                await Task.Delay(200);
            }
        }
    }

    [Fact]
    public async Task A_flood_of_300_strangers_holding_partial_maximal_frames_leaves_rank_0_memory_flat_and_the_cluster_forms()
    {
        using var ring = new LoopbackRing(2);
        int masterPort = ring.Configs[0].MasterPort!.Value;
        await ring.RunAsync(async () =>
        {
            // Not --verbose: at debug level the log may carry stack traces, and that is what is checked below.
            var master = ring.Serve(0, ["--prompt", "Once upon a time", "--max-tokens", "16"]);
            await WaitListeningAsync(masterPort, master);
            await Task.Delay(2000);
            double baseline = RssMb(master.Id);

            var strangers = await Task.WhenAll(Enumerable.Range(0, 300).Select(i => HoldPartialFrameAsync(masterPort, associate: i % 2 == 0)));
            double during = RssMb(master.Id);
            foreach (var s in strangers) s?.Dispose();
            await Task.Delay(2000);
            double after = RssMb(master.Id);
            Assert.True(after - baseline < 50, $"rank 0's RSS went from {baseline:0} MB to {during:0} MB during the flood and {after:0} MB after it");

            // Each kind of hostile connection is reported in one line, and no stack trace reaches the log.
            Assert.Contains("control port: refused connections from unregistered peers", master.Stderr);
            Assert.Matches("control port: closed the connection from 127.0.0.1:\\d+: a frame of 1048576 bytes exceeds the limit of (4096|65536) bytes", master.Stderr);
            Assert.DoesNotMatch(@"(?m)^\s+at |\s{3}at Akka\.", master.Stderr);

            // The real worker still gets in, and the answer is exact.
            var worker = ring.Serve(1);
            int exit = await master.WaitAsync(Deadline);
            Assert.True(exit == 0, $"rank 0 exited with {exit}\nstderr:\n{master.Stderr}\nworker:\n{worker.Stderr}");
            Assert.Equal(", there was a little girl named Lily. She loved to play", master.Stdout.TrimEnd('\n'));
            Console.WriteLine($"rank 0 RSS: baseline {baseline:0.0} MB, during the flood {during:0.0} MB, 2 s after {after:0.0} MB");
        });
    }
}
