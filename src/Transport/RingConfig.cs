using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ActorRing.Transport;

/// <summary>
/// One process's place in the ring, read from the JSON file of the mistral.rs <c>ring</c> backend, unchanged:
/// <c>master_ip</c>, <c>master_port</c>, <c>port</c>, <c>right_port</c>, <c>right_ip</c>, <c>rank</c>,
/// <c>world_size</c>. Unlike mistral.rs, any world size ≥ 1 is accepted.
/// </summary>
public sealed record RingConfig
{
    public const string EnvironmentVariable = "RING_CONFIG";

    /// <summary>mistral.rs's meaning of an absent <c>right_ip</c>: the neighbour runs on this machine.</summary>
    public const string ThisMachine = "0.0.0.0";

    public string? MasterIp { get; init; }
    public int? MasterPort { get; init; }
    public required int Port { get; init; }
    public required int RightPort { get; init; }
    public string RightIp { get; init; } = ThisMachine;
    public required int Rank { get; init; }
    public required int WorldSize { get; init; }

    /// <summary>Where the configuration came from (a file path, or a name given to <see cref="Parse"/>).</summary>
    public string SourcePath { get; init; } = "(inline)";

    /// <summary>Problems that do not stop the ring (unknown fields, a worker without a master address).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    public int LeftRank => (Rank - 1 + WorldSize) % WorldSize;
    public int RightRank => (Rank + 1) % WorldSize;

    private static readonly string[] KnownFields =
        ["master_ip", "master_port", "port", "right_port", "right_ip", "rank", "world_size"];

    /// <summary>Reads the file named by <c>RING_CONFIG</c>, or <paramref name="overridePath"/> when given.</summary>
    public static RingConfig LoadFromEnvironment(string? overridePath = null)
    {
        if (!string.IsNullOrEmpty(overridePath)) return Load(overridePath);
        string? path = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new RingConfigException($"{EnvironmentVariable} environment variable", null,
                $"not set (value '{path ?? ""}'); set {EnvironmentVariable}=path/to/ring_N.json or pass --ring-config FILE");
        }
        return Load(path);
    }

    public static RingConfig Load(string path)
    {
        string json;
        if (Directory.Exists(path))
            throw new RingConfigException(path, null,
                $"is a directory, not a ring file (full path '{Path.GetFullPath(path)}'); give the path of this rank's JSON file, such as {Path.Combine(path, "ring_0.json")}");
        try
        {
            json = File.ReadAllText(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new RingConfigException(path, null,
                $"file not found (full path '{Path.GetFullPath(path)}'); check {EnvironmentVariable} or --ring-config", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RingConfigException(path, null, $"cannot read the file: {e.Message}", e);
        }
        return Parse(json, path);
    }

    /// <summary>Parses and validates one ring file. <paramref name="sourceName"/> is used in every message.</summary>
    public static RingConfig Parse(string json, string sourceName)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = false });
        }
        catch (JsonException e)
        {
            // JsonException positions are zero-based; editors count from one.
            long line = (e.LineNumber ?? 0) + 1, column = (e.BytePositionInLine ?? 0) + 1;
            throw new RingConfigException(sourceName, null,
                $"invalid JSON at line {line}, column {column}: {FirstSentence(e.Message)}", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new RingConfigException(sourceName, null, $"expected a JSON object, got {Describe(root)}");

            var warnings = new List<string>();
            foreach (var prop in root.EnumerateObject())
            {
                if (Array.IndexOf(KnownFields, prop.Name) < 0)
                {
                    warnings.Add($"{sourceName}: unknown field '{prop.Name}' (value {Describe(prop.Value)}) is ignored; " +
                                 $"known fields: {string.Join(", ", KnownFields)}");
                }
            }

            int worldSize = RequiredInt(root, "world_size", sourceName);
            int rank = RequiredInt(root, "rank", sourceName);
            int port = RequiredInt(root, "port", sourceName);
            int rightPort = RequiredInt(root, "right_port", sourceName);
            string? rightIp = OptionalString(root, "right_ip", sourceName);
            string? masterIp = OptionalString(root, "master_ip", sourceName);
            int? masterPort = OptionalInt(root, "master_port", sourceName);

            if (worldSize < 1)
                throw new RingConfigException(sourceName, "world_size", $"must be at least 1, got {worldSize}");
            if (rank < 0 || rank >= worldSize)
                throw new RingConfigException(sourceName, "rank",
                    $"must be in [0, {worldSize}) because world_size is {worldSize}, got {rank}");
            CheckPort(sourceName, "port", port);
            CheckPort(sourceName, "right_port", rightPort);
            if (masterPort is int mp) CheckPort(sourceName, "master_port", mp);

            rightIp ??= ThisMachine;
            if (!IsUsableHost(rightIp))
                throw new RingConfigException(sourceName, "right_ip",
                    $"'{rightIp}' is not an IP address or host name");
            // A ring of one talks to nobody, so a file that points a rank at itself is fine there.
            if (worldSize > 1 && port == rightPort && IsThisMachine(rightIp))
            {
                throw new RingConfigException(sourceName, "right_port",
                    $"{rightPort} equals 'port' while right_ip '{rightIp}' is this machine: the rank would connect to " +
                    "itself; set right_port to the right neighbour's port");
            }

            // Rank 0 listens on master_port (the control plane) and on port (the ring): one port cannot take both.
            // A worker's master_port is rank 0's, which collides with this rank's only on the same machine.
            if (masterPort is int controlPort && controlPort == port && (rank == 0 || (masterIp is not null && IsThisMachine(masterIp))))
            {
                throw new RingConfigException(sourceName, "master_port",
                    $"{controlPort} equals 'port' ({port}): rank 0's control endpoint and this rank's ring listener would " +
                    "share one port on this machine; give master_port a port of its own in every ring file");
            }

            if (masterIp is not null && !IsUsableHost(masterIp))
                throw new RingConfigException(sourceName, "master_ip", $"'{masterIp}' is not an IP address or host name");
            if (rank > 0)
            {
                // The mistral.rs two-machine example gives workers no master address at all, and it must
                // parse, so absence is a warning here; the control plane calls RequireMaster() and fails
                // with the same kind of message. A master that is present but half-given is always an error.
                if (masterIp is not null && masterPort is null)
                    throw new RingConfigException(sourceName, "master_port",
                        $"missing while master_ip is '{masterIp}': a worker (rank {rank}) needs both to reach rank 0");
                if (masterIp is null && masterPort is not null)
                    throw new RingConfigException(sourceName, "master_ip",
                        $"missing while master_port is {masterPort}: a worker (rank {rank}) needs both to reach rank 0");
                if (masterIp is null)
                    warnings.Add($"{sourceName}: worker rank {rank} has no master_ip/master_port; the ring forms, " +
                                 "but joining the control plane needs them");
            }

            return new RingConfig
            {
                MasterIp = masterIp,
                MasterPort = masterPort,
                Port = port,
                RightPort = rightPort,
                RightIp = rightIp,
                Rank = rank,
                WorldSize = worldSize,
                SourcePath = sourceName,
                Warnings = warnings,
            };
        }
    }

    /// <summary>
    /// The master endpoint a worker dials. Throws a <see cref="RingConfigException"/> naming the file and
    /// field when it is missing. <c>0.0.0.0</c> (mistral.rs's "this machine") becomes loopback.
    /// </summary>
    public (string Host, int Port) RequireMaster()
    {
        if (MasterIp is null)
            throw new RingConfigException(SourcePath, "master_ip",
                $"missing (value: none) but rank {Rank} must reach rank 0; add \"master_ip\" and \"master_port\"");
        if (MasterPort is null)
            throw new RingConfigException(SourcePath, "master_port",
                $"missing (value: none) but rank {Rank} must reach rank 0; add \"master_port\"");
        return (DialHost(MasterIp), MasterPort.Value);
    }

    /// <summary>The host to dial for the right neighbour (loopback when the file says "this machine").</summary>
    public string RightDialHost => DialHost(RightIp);

    /// <summary>
    /// N configurations for one machine: rank i listens on a free port and dials rank (i+1) mod N on
    /// 127.0.0.1. Ports are free when chosen and below the kernel's ephemeral range (<see cref="FreeLoopbackPorts"/>).
    /// </summary>
    public static IReadOnlyList<RingConfig> ForLoopback(int worldSize, int? masterPort = null, string sourcePrefix = "loopback")
    {
        if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, "must be at least 1");
        // One call for all ports (ring and master) so none is handed out twice.
        int[] ports = FreeLoopbackPorts(worldSize + 1);
        int master = masterPort ?? ports[worldSize];
        var configs = new RingConfig[worldSize];
        for (int i = 0; i < worldSize; i++)
        {
            configs[i] = new RingConfig
            {
                MasterIp = "127.0.0.1",
                MasterPort = master,
                Port = ports[i],
                RightPort = ports[(i + 1) % worldSize],
                RightIp = "127.0.0.1",
                Rank = i,
                WorldSize = worldSize,
                SourcePath = $"{sourcePrefix}[{i}]",
            };
        }
        return configs;
    }

    /// <summary>The mistral.rs JSON form of this configuration (what <see cref="Parse"/> reads back).</summary>
    public string ToJson()
    {
        var sb = new StringBuilder("{");
        if (MasterIp is not null) sb.Append(CultureInfo.InvariantCulture, $"\"master_ip\": {JsonSerializer.Serialize(MasterIp)}, ");
        if (MasterPort is not null) sb.Append(CultureInfo.InvariantCulture, $"\"master_port\": {MasterPort}, ");
        sb.Append(CultureInfo.InvariantCulture,
            $"\"port\": {Port}, \"right_port\": {RightPort}, \"right_ip\": {JsonSerializer.Serialize(RightIp)}, \"rank\": {Rank}, \"world_size\": {WorldSize}}}");
        return sb.ToString();
    }

    /// <summary>
    /// <paramref name="count"/> distinct loopback TCP ports that are free now, chosen BELOW the kernel's
    /// ephemeral range. A port taken from the ephemeral range (bind to port 0) is free only until the kernel
    /// hands it to someone else's port-0 bind or outgoing connection, and the ranks bind theirs seconds later
    /// (rank 0 only when the ring forms): a test run once lost its ring port to another process's Akka listener
    /// that way and the ring never formed. Below that range only an explicit bind can take a port.
    /// </summary>
    public static int[] FreeLoopbackPorts(int count)
    {
        // Keep every probe socket open until all are chosen so no port is handed out twice.
        var sockets = new List<Socket>();
        try
        {
            var (low, high) = BelowEphemeralRange();
            for (int attempt = 0; sockets.Count < count && attempt < 64 * count && high > low; attempt++)
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    s.Bind(new IPEndPoint(IPAddress.Loopback, Random.Shared.Next(low, high)));
                    sockets.Add(s);
                }
                catch (SocketException)
                {
                    s.Dispose(); // taken: try another
                }
            }
            while (sockets.Count < count) // no such range here (not Linux), or it is full: let the OS choose
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                sockets.Add(s);
                s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            }
            return sockets.Select(s => ((IPEndPoint)s.LocalEndPoint!).Port).ToArray();
        }
        finally
        {
            foreach (var s in sockets) s.Dispose();
        }
    }

    /// <summary>Up to 16384 ports just below Linux's ephemeral range (<c>ip_local_port_range</c>), or an empty range.</summary>
    private static (int Low, int High) BelowEphemeralRange()
    {
        try
        {
            var fields = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range")
                .Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
            int ephemeralLow = int.Parse(fields[0], CultureInfo.InvariantCulture);
            return (Math.Max(1024, ephemeralLow - 16384), ephemeralLow);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return (0, 0);
        }
    }

    internal static string DialHost(string host) =>
        host is ThisMachine or "::" or "" ? IPAddress.Loopback.ToString() : host;

    /// <summary>Whether <paramref name="host"/> (a ring file address) names this machine.</summary>
    public static bool IsThisMachine(string host) =>
        host is ThisMachine or "::" or "localhost" || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));

    private static bool IsUsableHost(string host) =>
        IPAddress.TryParse(host, out _) || Uri.CheckHostName(host) == UriHostNameType.Dns;

    private static void CheckPort(string source, string field, int value)
    {
        if (value < 1 || value > 65535)
            throw new RingConfigException(source, field, $"must be a TCP port in 1..65535, got {value}");
    }

    private static int RequiredInt(JsonElement root, string field, string source)
    {
        if (!root.TryGetProperty(field, out var v))
            throw new RingConfigException(source, field, "required field is missing (value: none); it must be an integer");
        return AsInt(v, field, source);
    }

    private static int? OptionalInt(JsonElement root, string field, string source)
    {
        if (!root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return AsInt(v, field, source);
    }

    private static int AsInt(JsonElement v, string field, string source)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int value))
            throw new RingConfigException(source, field, $"must be an integer, got {Describe(v)}");
        return value;
    }

    private static string? OptionalString(JsonElement root, string field, string source)
    {
        if (!root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String)
            throw new RingConfigException(source, field, $"must be a string, got {Describe(v)}");
        return v.GetString()!;
    }

    private static string Describe(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => $"the string {v.GetRawText()}",
        JsonValueKind.Number => $"the number {v.GetRawText()}",
        JsonValueKind.True or JsonValueKind.False => $"the boolean {v.GetRawText()}",
        JsonValueKind.Null => "null",
        JsonValueKind.Array => $"an array {Truncate(v.GetRawText())}",
        JsonValueKind.Object => $"an object {Truncate(v.GetRawText())}",
        _ => v.GetRawText(),
    };

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";

    private static string FirstSentence(string message)
    {
        int cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}
