using System.Diagnostics;
using System.Net;

namespace ActorRing.Host.Tests.Network;

/// <summary>
/// Hosts for a multi-machine test on one Linux box: one network namespace per rank, each with its own address on
/// a bridge in the root namespace (where the test and its <see cref="DelayRelay"/>s run), its own loopback and
/// port space. Each link is capped by a <c>tc tbf</c> qdisc on both ends of its veth pair. Names carry the test
/// process's id, so two test runs on one machine do not collide; <see cref="Dispose"/> removes everything.
/// </summary>
public sealed class NamespaceCluster : IDisposable
{
    private readonly List<string> _namespaces = [];
    private readonly string _bridge;
    private readonly string _tag;

    /// <summary>The bridge's address in the root namespace: the relays listen here.</summary>
    public IPAddress Gateway { get; }

    private readonly string _subnet;

    private NamespaceCluster(int worldSize)
    {
        int id = Environment.ProcessId;
        _tag = $"ar{id % 100000}";
        _bridge = $"{_tag}b";
        _subnet = $"10.{100 + id / 256 % 100}.{id % 256}";
        Gateway = IPAddress.Parse($"{_subnet}.1");
        WorldSize = worldSize;
    }

    public int WorldSize { get; }

    public string Namespace(int rank) => $"{_tag}r{rank}";

    public IPAddress Address(int rank) => IPAddress.Parse($"{_subnet}.{10 + rank}");

    /// <summary>Prefix that runs a command inside rank <paramref name="rank"/>'s namespace.</summary>
    public string[] Exec(int rank) => ["ip", "netns", "exec", Namespace(rank)];

    /// <summary>The namespaces with a <paramref name="rateLimit"/> (tc's syntax, e.g. "1gbit") on every link, or null
    /// with the reason when this machine does not allow them (not root, no iproute2, a container without
    /// CAP_NET_ADMIN).</summary>
    public static (NamespaceCluster? Cluster, string? Reason) TryCreate(int worldSize, string? rateLimit)
    {
        if (!OperatingSystem.IsLinux()) return (null, "network namespaces need Linux");
        if (Environment.UserName != "root" && Run("id", "-u").Output.Trim() != "0")
            return (null, "network namespaces need root (CI runs as root)");
        var cluster = new NamespaceCluster(worldSize);
        try
        {
            cluster.Cleanup(); // a previous run with this process id that was killed before disposing
            cluster.Must("ip", "link", "add", cluster._bridge, "type", "bridge");
            cluster.Must("ip", "addr", "add", $"{cluster.Gateway}/24", "dev", cluster._bridge);
            cluster.Must("ip", "link", "set", cluster._bridge, "up");
            for (int r = 0; r < worldSize; r++)
            {
                string ns = cluster.Namespace(r), host = $"{cluster._tag}h{r}", inside = $"{cluster._tag}n{r}";
                cluster.Must("ip", "netns", "add", ns);
                cluster._namespaces.Add(ns);
                cluster.Must("ip", "link", "add", host, "type", "veth", "peer", "name", inside);
                cluster.Must("ip", "link", "set", inside, "netns", ns);
                cluster.Must("ip", "link", "set", host, "master", cluster._bridge, "up");
                cluster.Must("ip", "-n", ns, "link", "set", "lo", "up");
                cluster.Must("ip", "-n", ns, "addr", "add", $"{cluster.Address(r)}/24", "dev", inside);
                cluster.Must("ip", "-n", ns, "link", "set", inside, "up");
                if (rateLimit is not null)
                {
                    // tbf shapes what leaves an interface: the host end caps traffic into the rank, the inside end out of it.
                    cluster.Must("tc", "qdisc", "add", "dev", host, "root", "tbf", "rate", rateLimit, "burst", "256kb", "latency", "50ms");
                    cluster.Must("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", inside, "root", "tbf", "rate", rateLimit, "burst", "256kb", "latency", "50ms");
                }
            }
            return (cluster, null);
        }
        catch (InvalidOperationException e)
        {
            cluster.Dispose();
            return (null, $"could not build network namespaces here: {e.Message}");
        }
    }

    private void Must(string file, params string[] args)
    {
        var (code, output) = Run(file, args);
        if (code != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({code}): {output.Trim()}");
    }

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!;
            string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            if (!p.WaitForExit(10_000))
            {
                p.Kill();
                return (-1, "timed out");
            }
            return (p.ExitCode, output);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, $"{file}: {e.Message}");
        }
    }

    private void Cleanup()
    {
        for (int r = 0; r < Math.Max(WorldSize, 8); r++) Run("ip", "netns", "del", Namespace(r)); // takes its veth ends along
        Run("ip", "link", "del", _bridge);
    }

    public void Dispose() => Cleanup();
}
