using Akka.Actor;
using Akka.Actor.Internal;
using Akka.Event;
using Akka.Remote;

namespace ActorRing.Actors.Hosting;

/// <summary>
/// Akka.Remote's provider with one change: remote DeathWatch reports a silent peer as terminated but does
/// not quarantine it.
/// <para>
/// Stock Akka.Remote quarantines a peer's actor-system UID the moment its DeathWatch failure detector fires,
/// and a quarantined UID is refused for good (for days, until <c>prune-quarantine-marker-after</c>): only a
/// new process, with a new UID, can talk to this rank again. A rank that was merely paused (SIGSTOP, a VM
/// migration, a long GC, a laptop lid) and comes back with its weights still loaded would be shut out
/// forever, and every association attempt of its would be closed without a word. ActorRing needs no
/// quarantine for correctness: the coordinator treats a lost rank as gone (it fails its work, closes the
/// ring and forms a new one when the rank registers again, under a new generation number), so a late
/// message from the old association is ignored by generation. The failure detector still fires, so
/// <c>Terminated</c> arrives exactly as before. Akka.Cluster makes the same choice for cluster members
/// (its watcher leaves quarantine to membership).
/// </para>
/// <para>Quarantine for other reasons (system-message sequence numbers out of step, a peer restarted with pending
/// system messages) still happens here, but its marker lasts seconds (<c>prune-quarantine-marker-after</c> in
/// hocon/actorring.hocon), after which the two systems may associate again with fresh buffers.</para>
/// Installed by <see cref="ActorRingAkkaExtensions.AddActorRingRemoting"/>.
/// </summary>
public sealed class RejoinableRemoteProvider(string systemName, Settings settings, EventStream eventStream)
    : RemoteActorRefProvider(systemName, settings, eventStream)
{
    private volatile IReadOnlySet<Address> _watchedNodes = new HashSet<Address>();

    /// <summary>
    /// The remote systems this one watches: on rank 0 the registered workers, on a worker the coordinator it
    /// registered with (each side watches the other only after registration). <see cref="ControlPortGuard"/>
    /// treats connections from these systems as registered peers. Safe to read from any thread.
    /// </summary>
    public bool IsWatched(string system, string host, int port)
    {
        foreach (var a in _watchedNodes)
            if (a.Port == port && string.Equals(a.System, system, StringComparison.Ordinal) && string.Equals(a.Host, host, StringComparison.OrdinalIgnoreCase))
                return true;
        return false;
    }

    protected override IActorRef CreateRemoteWatcher(ActorSystemImpl system)
    {
        var failureDetector = CreateRemoteWatcherFailureDetector(system);
        var s = RemoteSettings;
        var props = Props.Create(() => new RejoinableRemoteWatcher(this, failureDetector, s.WatchHeartBeatInterval,
                s.WatchUnreachableReaperInterval, s.WatchHeartbeatExpectedResponseAfter))
            .WithDispatcher("akka.actor.internal-dispatcher") // as the stock watcher (the constant is internal)
            .WithDeploy(Deploy.Local);
        return system.SystemActorOf(s.ConfigureDispatcher(props), "remote-watcher");
    }

    /// <summary>The stock watcher (heartbeats, failure detection, <c>AddressTerminated</c>), minus the quarantine,
    /// publishing the nodes it watches to the provider.</summary>
    private sealed class RejoinableRemoteWatcher(
        RejoinableRemoteProvider provider, IFailureDetectorRegistry<Address> failureDetector, TimeSpan heartbeatInterval,
        TimeSpan reaperInterval, TimeSpan expectedResponseAfter)
        : RemoteWatcher(failureDetector, heartbeatInterval, reaperInterval, expectedResponseAfter)
    {
        protected override void Quarantine(Address address, int? addressUid) =>
            Log.Info("{0} stopped answering heartbeats; reported as terminated, not quarantined, so it can rejoin", address);

        protected override void OnReceive(object message)
        {
            base.OnReceive(message);
            var published = provider._watchedNodes;
            if (published.Count != WatchingNodes.Count || !WatchingNodes.All(published.Contains))
                provider._watchedNodes = WatchingNodes.ToHashSet();
        }
    }
}
