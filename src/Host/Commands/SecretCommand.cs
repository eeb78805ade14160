using ActorRing.Actors.Security;
using ActorRing.Host.Cli;

namespace ActorRing.Host.Commands;

/// <summary><c>actorring secret</c>: a fresh random cluster secret on stdout, for <c>export ACTORRING_SECRET=$(actorring secret)</c>.</summary>
internal static class SecretCommand
{
    public static Task<int> RunAsync(string[] args)
    {
        if (args.Length > 0) throw new UsageException($"secret takes no arguments, got '{args[0]}'");
        Console.Out.WriteLine(ClusterSecret.NewHex());
        return Task.FromResult(0);
    }
}
