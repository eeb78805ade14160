using System.CommandLine;

namespace ActorRing.Host.Bench;

/// <summary>
/// <c>actorring bench BENCHMARK ...</c>. Each benchmark is a subcommand with its own options; hidden ones (the
/// per-rank halves of multi-process benchmarks) are registered too but not listed in --help.
/// </summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Benchmarks, each printing JSON lines with its baseline measured in the same run");
        foreach (var benchmark in AllReduceBench.Create()) bench.Subcommands.Add(benchmark);
        bench.Subcommands.Add(DecodeBench.Create());
        bench.Subcommands.Add(ScalingBench.Create());
        bench.Subcommands.Add(ServeBench.Create());
        bench.Subcommands.Add(TokenizeBench.Create());
        return bench;
    }
}
