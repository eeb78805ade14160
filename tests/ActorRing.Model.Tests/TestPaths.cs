namespace ActorRing.Model.Tests;

internal static class TestPaths
{
    public static string Bundled => ModelDirectory.DefaultBundledPath();
    public static string Hf => Path.Combine(Bundled, "hf");
    public static string Llama2c => Path.Combine(Bundled, "llama2c");

    public static int[] ExpectedGreedyIds() =>
        System.Text.Json.JsonSerializer.Deserialize<int[]>(File.ReadAllText(Path.Combine(Bundled, "expected", "greedy_bos_256.ids.json")))!;

    /// <summary>Greedy: the highest logit, lowest index on ties.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}
