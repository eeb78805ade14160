using ActorRing.Model.Tests.Support;

namespace ActorRing.Model.Tests;

/// <summary>The bundled stories260K reproduces llama2.c's published greedy output at every world size.</summary>
public class StoriesGreedyTests
{
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var format in new[] { "hf", "llama2c" })
            foreach (var n in new[] { 1, 2, 4 })
                data.Add(format, n);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Greedy_from_BOS_for_256_steps_matches_llama2c(string format, int worldSize)
    {
        string dir = format == "hf" ? TestPaths.Hf : TestPaths.Llama2c;
        int[] expected = TestPaths.ExpectedGreedyIds();
        var outputs = InProcessGroup.Run(worldSize, comm =>
        {
            using var model = ShardedLlama.Load(dir, comm, new ModelLoadOptions { ContextLength = 512, Threads = 1 });
            var generated = new List<int>();
            int token = 1; // BOS
            for (int pos = 0; pos < expected.Length; pos++)
            {
                // Every rank must feed the same token: rank 0 decides and broadcasts, as the generator does.
                var logits = model.Forward(0, [token], pos);
                Span<int> next = [logits is null ? 0 : TestPaths.ArgMax(logits)];
                comm.Broadcast(next, 0);
                token = next[0];
                generated.Add(token);
            }
            return generated.ToArray();
        });
        foreach (var ids in outputs) Assert.Equal(expected, ids);
    }
}
