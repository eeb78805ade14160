namespace ActorRing.Host;

public static class Program
{
    /// <summary>Every verb, its options and its --help live in <see cref="Cli.CommandLine"/>'s command tree.</summary>
    public static Task<int> Main(string[] args) => Cli.CommandLine.RunAsync(args);
}
