using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using ActorRing.Transport;

namespace ActorRing.Transport.Tests;

/// <summary>Dead, silent, late and out-of-step neighbours: typed errors within deadlines, never hangs.</summary>
public class FailureTests
{
    [Fact]
    public async Task SilentNeighbourGivesTypedTimeoutWithinDeadline()
    {
        var deadline = TimeSpan.FromSeconds(1.5);
        var ranks = await RingHarness.FormAsync(2, RingHarness.Options(opTimeout: deadline));
        try
        {
            foreach (var algorithm in new[] { AllReduceAlgorithm.Latency, AllReduceAlgorithm.Ring })
            {
                ranks[0].AlgorithmOverride = algorithm;
                var sw = Stopwatch.StartNew();
                // Rank 1 is alive but never calls the collective.
                var e = Assert.Throws<CollectivePeerTimeoutException>(() => ranks[0].AllReduceSum(new float[300_000]));
                sw.Stop();
                Assert.InRange(sw.Elapsed, deadline - TimeSpan.FromMilliseconds(50), deadline + TimeSpan.FromSeconds(8));
                Assert.Contains("left neighbour rank 1", e.Message);
                Assert.Contains("all-reduce #1", e.Message);
                Assert.Contains("f32, 300000 elements", e.Message);
                // The ring is now unusable, and says so instead of hanging or returning garbage.
                var again = Assert.Throws<CollectiveException>(() => ranks[0].Barrier());
                Assert.Contains("earlier operation", again.Message);
                // Further tests need a fresh ring.
                foreach (var r in ranks) r.Dispose();
                ranks = await RingHarness.FormAsync(2, RingHarness.Options(opTimeout: deadline));
            }
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    [Fact]
    public async Task NeighbourDyingMidOperationGivesTypedErrorsOnAllSurvivors()
    {
        var ranks = await RingHarness.FormAsync(3, RingHarness.Options(opTimeout: TimeSpan.FromSeconds(30)));
        try
        {
            var errors = new Exception?[3];
            var sw = Stopwatch.StartNew();
            RingHarness.OnAllRanks(ranks, c =>
            {
                if (c.Rank == 2)
                {
                    // Rank 2 starts its part, then dies (its sockets close) while the others are mid-operation.
                    Thread.Sleep(300);
                    c.Dispose();
                    return;
                }
                try
                {
                    c.AllReduceSum(new float[2_000_000]);
                }
                catch (Exception e)
                {
                    errors[c.Rank] = e;
                }
            });
            // Closure is detected, not waited out: far sooner than the 30 s deadline.
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), $"took {sw.Elapsed}");
            Assert.IsAssignableFrom<CollectiveException>(errors[0]);
            Assert.IsAssignableFrom<CollectiveException>(errors[1]);
            Assert.Contains("all-reduce #1", errors[0]!.Message);
            Assert.Contains("neighbour rank", errors[0]!.Message);
            Assert.Contains("neighbour rank", errors[1]!.Message);
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    [Fact]
    public async Task DisposeFromAnotherThreadUnblocksARunningOperation()
    {
        var ranks = await RingHarness.FormAsync(2, RingHarness.Options(opTimeout: TimeSpan.FromSeconds(30)));
        try
        {
            // Rank 1 never joins, so rank 0 blocks; then its owner (another thread) disposes it.
            var disposer = Task.Run(async () =>
            {
                await Task.Delay(300);
                ranks[0].Dispose();
            });
            var sw = Stopwatch.StartNew();
            var e = Assert.ThrowsAny<CollectiveException>(() => ranks[0].AllReduceSum(new float[1_000_000]));
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"took {sw.Elapsed}");
            Assert.Contains("all-reduce #1", e.Message);
            await disposer;
            Assert.Throws<ObjectDisposedException>(() => ranks[0].Barrier());
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    [Theory]
    [InlineData("length")]
    [InlineData("dtype")]
    [InlineData("op")]
    public async Task MismatchedOperationsAreDesyncErrorsNotWrongSums(string kind)
    {
        var ranks = await RingHarness.FormAsync(2, RingHarness.Options(opTimeout: TimeSpan.FromSeconds(10)));
        try
        {
            var errors = new Exception?[2];
            RingHarness.OnAllRanks(ranks, c =>
            {
                try
                {
                    if (c.Rank == 0) c.AllReduceSum(new float[10]);
                    else if (kind == "length") c.AllReduceSum(new float[12]);
                    else if (kind == "dtype") c.AllReduceSum(new BFloat16[20]);
                    else c.Barrier();
                }
                catch (Exception e)
                {
                    errors[c.Rank] = e;
                }
            });
            var e0 = Assert.IsType<CollectiveDesyncException>(errors[0]);
            Assert.Contains("left neighbour rank 1", e0.Message);
            Assert.Contains(kind switch
            {
                "length" => "payload length 48 bytes, expected 40",
                "dtype" => "dtype bf16, expected f32",
                _ => "frame of a barrier arrived, expected a all-reduce",
            }, e0.Message);
            Assert.IsAssignableFrom<CollectiveException>(errors[1]);
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    [Fact]
    public async Task HugeDeclaredLengthAndStaleSequenceAreRejectedFromTheHeader()
    {
        foreach (var bad in new[]
                 {
                     new FrameHeader(OpCode.AllReduce, (byte)DType.F32, 4, 1, 0, uint.MaxValue),
                     new FrameHeader(OpCode.AllReduce, (byte)DType.F32, 4, 7, 0, 40),
                 })
        {
            // A fake rank 1 that completes both handshakes, then sends one forged frame header.
            var configs = RingConfig.ForLoopback(2);
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, configs[1].Port));
            listener.Listen();
            var rank0Task = RingCommunicator.ConnectAsync(configs[0], RingHarness.Options(opTimeout: TimeSpan.FromSeconds(20)), null, CancellationToken.None);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            using var fromRank0 = await listener.AcceptAsync(cts.Token);
            await Handshake.RunAsync(fromRank0, dialer: false, 1, 2, 0, RingHarness.Secret, cts.Token);
            using var toRank0 = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await toRank0.ConnectAsync(IPAddress.Loopback, configs[0].Port, cts.Token);
            await Handshake.RunAsync(toRank0, dialer: true, 1, 2, 0, RingHarness.Secret, cts.Token);
            using var rank0 = await rank0Task;

            var header = new byte[FrameHeader.Size];
            bad.Write(header);
            await toRank0.SendAsync(header);
            var sw = Stopwatch.StartNew();
            var e = Assert.Throws<CollectiveDesyncException>(() => rank0.AllReduceSum(new float[10]));
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"took {sw.Elapsed}");
            Assert.Contains("left neighbour rank 1", e.Message);
            Assert.Contains(bad.Length == uint.MaxValue
                ? "payload length 4294967295 bytes, expected 40 (rejected before reading it)"
                : "frame of operation #7 arrived during operation #1", e.Message);
        }
    }

    [Fact]
    public async Task NeighbourStartedFiveSecondsLateStillFormsTheRing()
    {
        var configs = RingConfig.ForLoopback(3);
        var options = RingHarness.Options();
        var early0 = RingCommunicator.ConnectAsync(configs[0], options, null, CancellationToken.None);
        var early2 = RingCommunicator.ConnectAsync(configs[2], options, null, CancellationToken.None);
        await Task.Delay(TimeSpan.FromSeconds(5));
        Assert.False(early0.IsCompleted);
        var late1 = RingCommunicator.ConnectAsync(configs[1], options, null, CancellationToken.None);
        var ranks = await Task.WhenAll(early0, late1, early2).WaitAsync(TimeSpan.FromSeconds(60));
        try
        {
            var sums = new float[3];
            RingHarness.OnAllRanks(ranks, c =>
            {
                var v = new float[] { c.Rank };
                c.AllReduceSum(v);
                sums[c.Rank] = v[0];
            });
            Assert.Equal([3f, 3f, 3f], sums);
        }
        finally
        {
            RingHarness.DisposeAll(ranks);
        }
    }

    [Fact]
    public async Task MissingNeighbourIsAFormationErrorWithinTheConnectDeadline()
    {
        var configs = RingConfig.ForLoopback(2);
        var sw = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<RingFormationException>(() => RingCommunicator.ConnectAsync(configs[0],
            RingHarness.Options() with { ConnectTimeout = TimeSpan.FromSeconds(1) }, null, CancellationToken.None));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"took {sw.Elapsed}");
        Assert.Contains("right neighbour rank 1", e.Message);
        Assert.Contains($":{configs[0].RightPort}", e.Message);
        Assert.Contains("left neighbour rank 1 did not join", e.Message);
    }

    [Fact]
    public async Task PortInUseAndMissingSecretAreFormationErrors()
    {
        var configs = RingConfig.ForLoopback(2);
        using var squatter = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork,
            System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        squatter.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Any, configs[0].Port));
        squatter.Listen();
        var e = await Assert.ThrowsAsync<RingFormationException>(() =>
            RingCommunicator.ConnectAsync(configs[0], RingHarness.Options(), null, CancellationToken.None));
        Assert.Contains("'port'", e.Message);
        Assert.Contains(configs[0].Port.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message);

        var noSecret = await Assert.ThrowsAsync<RingFormationException>(() =>
            RingCommunicator.ConnectAsync(configs[1], RingHarness.Options() with { ClusterSecret = [] }, null, CancellationToken.None));
        Assert.Contains(RingOptions.SecretEnvironmentVariable, noSecret.Message);
    }
}
