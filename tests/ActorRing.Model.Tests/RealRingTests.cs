using System.Net;
using System.Security.Cryptography;
using ActorRing.Model.Tests.Support;
using ActorRing.Model.Sampling;
using ActorRing.Model.Tokenization;
using ActorRing.Transport;

namespace ActorRing.Model.Tests;

/// <summary>The model over the real TCP ring on loopback (ranks as threads), not the in-process fake.</summary>
public class RealRingTests
{
    private static T[] OverLoopbackRing<T>(int worldSize, Func<ICollectives, T> body)
    {
        var configs = RingConfig.ForLoopback(worldSize, sourcePrefix: "model-test");
        var options = new RingOptions
        {
            ClusterSecret = RandomNumberGenerator.GetBytes(32),
            BindAddress = IPAddress.Loopback,
            ConnectTimeout = TimeSpan.FromSeconds(30),
            OperationTimeout = TimeSpan.FromSeconds(30),
        };
        var comms = Task.WhenAll(configs.Select(c => RingCommunicator.ConnectAsync(c, options, null, CancellationToken.None)))
            .WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();
        return RankThreads.Run(worldSize, rank =>
        {
            using var comm = comms[rank];
            return body(comm);
        });
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Greedy_generation_over_the_loopback_ring_reproduces_the_published_ids(int worldSize)
    {
        var results = OverLoopbackRing(worldSize, comm =>
        {
            using var m = ShardedLlama.Load(TestPaths.Hf, comm, new ModelLoadOptions { ContextLength = 512, Threads = 1 });
            return LockstepGeneration.Run(m, comm, [1], SamplingOptions.Greedy with { MaxTokens = 256 },
                comm.Rank == 0 ? TokenizerLoader.Load(TestPaths.Hf) : null);
        });
        Assert.Equal(TestPaths.ExpectedGreedyIds(), results[0].GeneratedIds);
    }

    [Fact]
    public void Logits_over_the_ring_in_bf16_match_the_in_process_fake_exactly()
    {
        // The ring sums bf16 in float32 and rounds once, in a fixed order; so does the fake. Same inputs,
        // same arithmetic: the gathered logits must agree bit for bit.
        int[] prompt = [1, 403, 407, 261, 378];
        var options = new ModelLoadOptions { ContextLength = 32, Threads = 1, DType = ComputeDType.BF16 };
        float[]? Run(ICollectives comm)
        {
            using var m = ShardedLlama.Load(TestPaths.Hf, comm, options);
            return m.Forward(0, prompt, 0);
        }
        var ring = OverLoopbackRing(2, Run)[0]!;
        var fake = Support.InProcessGroup.Run(2, Run)[0]!;
        Assert.Equal(fake, ring);
    }
}
