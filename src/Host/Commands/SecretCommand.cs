using System.CommandLine;
using ActorRing.Actors.Security;

namespace ActorRing.Host.Commands;

/// <summary><c>actorring secret</c>: a fresh random cluster secret on stdout, for <c>export ACTORRING_SECRET=$(actorring secret)</c>.</summary>
internal static class SecretCommand
{
    public static Command Create()
    {
        var command = new Command("secret", "Print a fresh random ACTORRING_SECRET (64 hex digits)");
        command.SetAction(result => result.InvocationConfiguration.Output.WriteLine(ClusterSecret.NewHex()));
        return command;
    }
}
