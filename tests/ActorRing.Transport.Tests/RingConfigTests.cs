using ActorRing.Transport;

namespace ActorRing.Transport.Tests;

public class RingConfigTests
{
    private const string Src = "ring_test.json";

    private static RingConfigException Fails(string json)
    {
        var e = Assert.Throws<RingConfigException>(() => RingConfig.Parse(json, Src));
        Assert.Contains(Src, e.Message);
        return e;
    }

    [Fact]
    public void MistralLoopbackExamplePairParses()
    {
        var r0 = RingConfig.Parse("""
            {
              "master_ip": "0.0.0.0",
              "master_port": 1234,
              "port": 12345,
              "right_port": 12346,
              "rank": 0,
              "world_size": 2
            }
            """, "ring_0.json");
        var r1 = RingConfig.Parse("""
            {
              "master_ip": "0.0.0.0",
              "master_port": 1234,
              "port": 12346,
              "right_port": 12345,
              "rank": 1,
              "world_size": 2
            }
            """, "ring_1.json");
        Assert.Equal((0, 2, 12345, 12346, "0.0.0.0"), (r0.Rank, r0.WorldSize, r0.Port, r0.RightPort, r0.RightIp));
        Assert.Equal((1, 12346, 12345), (r1.Rank, r1.Port, r1.RightPort));
        Assert.Equal("0.0.0.0", r1.MasterIp);
        Assert.Equal(1234, r1.MasterPort);
        Assert.Empty(r0.Warnings);
        Assert.Empty(r1.Warnings);
        // "0.0.0.0" is mistral.rs's "this machine": dialled as loopback.
        Assert.Equal("127.0.0.1", r1.RightDialHost);
        Assert.Equal(("127.0.0.1", 1234), r1.RequireMaster());
    }

    [Fact]
    public void MistralTwoMachineExamplePairParses()
    {
        var a = RingConfig.Parse("""
            { "port": 12345, "right_port": 12346, "right_ip": "192.168.1.11", "rank": 0, "world_size": 2 }
            """, "ring_0.json");
        var b = RingConfig.Parse("""
            { "port": 12346, "right_port": 12345, "right_ip": "192.168.1.10", "rank": 1, "world_size": 2 }
            """, "ring_1.json");
        Assert.Equal("192.168.1.11", a.RightIp);
        Assert.Equal("192.168.1.10", b.RightDialHost);
        Assert.Null(b.MasterIp);
        // The example gives the worker no master address: the ring is fine, the control plane is told why not.
        Assert.Contains(b.Warnings, w => w.Contains("ring_1.json") && w.Contains("master_ip"));
        var e = Assert.Throws<RingConfigException>(() => b.RequireMaster());
        Assert.Contains("ring_1.json", e.Message);
        Assert.Contains("master_ip", e.Message);
    }

    [Fact]
    public void InvalidJsonNamesLineAndColumn()
    {
        var e = Fails("{\n  \"port\": 1,\n  \"rank\": 0 oops\n}");
        Assert.Contains("line 3", e.Message);
        Assert.Contains("column", e.Message);
    }

    [Fact]
    public void NonObjectIsRejected()
    {
        var e = Fails("[1, 2]");
        Assert.Contains("[1, 2]", e.Message);
    }

    [Theory]
    [InlineData("port")]
    [InlineData("right_port")]
    [InlineData("rank")]
    [InlineData("world_size")]
    public void MissingRequiredFieldIsNamed(string field)
    {
        var fields = new Dictionary<string, string>
        {
            ["port"] = "\"port\": 5000", ["right_port"] = "\"right_port\": 5001", ["rank"] = "\"rank\": 0", ["world_size"] = "\"world_size\": 2",
        };
        fields.Remove(field);
        var e = Fails("{" + string.Join(", ", fields.Values) + "}");
        Assert.Equal(field, e.Field);
        Assert.Contains($"'{field}'", e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Theory]
    [InlineData("port", "\"5000\"", "the string \"5000\"")]
    [InlineData("rank", "1.5", "the number 1.5")]
    [InlineData("world_size", "true", "the boolean true")]
    [InlineData("right_ip", "42", "the number 42")]
    [InlineData("master_port", "\"x\"", "the string \"x\"")]
    public void WrongTypeNamesFieldAndValue(string field, string value, string described)
    {
        var fields = new Dictionary<string, string>
        {
            ["port"] = "5000", ["right_port"] = "5001", ["rank"] = "0", ["world_size"] = "2",
            ["master_ip"] = "\"127.0.0.1\"", ["master_port"] = "6000",
        };
        fields[field] = value;
        var e = Fails("{" + string.Join(", ", fields.Select(kv => $"\"{kv.Key}\": {kv.Value}")) + "}");
        Assert.Equal(field, e.Field);
        Assert.Contains(described, e.Message);
    }

    [Fact]
    public void UnknownFieldIsAWarningNamingFieldAndValue()
    {
        var c = RingConfig.Parse("""{ "port": 5000, "right_port": 5001, "rank": 0, "world_size": 2, "rigth_ip": "10.0.0.2" }""", Src);
        var w = Assert.Single(c.Warnings);
        Assert.Contains(Src, w);
        Assert.Contains("rigth_ip", w);
        Assert.Contains("10.0.0.2", w);
    }

    [Theory]
    [InlineData(2, 2)]
    [InlineData(3, -1)]
    [InlineData(1, 1)]
    public void RankOutsideWorldIsRejected(int worldSize, int rank)
    {
        var e = Fails($$"""{ "port": 5000, "right_port": 5001, "master_ip": "10.0.0.1", "master_port": 6000, "rank": {{rank}}, "world_size": {{worldSize}} }""");
        Assert.Equal("rank", e.Field);
        Assert.Contains($"got {rank}", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-4)]
    public void WorldSizeBelowOneIsRejected(int worldSize)
    {
        var e = Fails($$"""{ "port": 5000, "right_port": 5001, "rank": 0, "world_size": {{worldSize}} }""");
        Assert.Equal("world_size", e.Field);
        Assert.Contains($"got {worldSize}", e.Message);
    }

    [Theory]
    [InlineData("port", 0)]
    [InlineData("port", 65536)]
    [InlineData("right_port", -1)]
    [InlineData("master_port", 70000)]
    public void PortOutOfRangeIsRejected(string field, int value)
    {
        var fields = new Dictionary<string, int> { ["port"] = 5000, ["right_port"] = 5001, ["rank"] = 0, ["world_size"] = 2, ["master_port"] = 6000 };
        fields[field] = value;
        var e = Fails("{\"master_ip\": \"10.0.0.1\", " + string.Join(", ", fields.Select(kv => $"\"{kv.Key}\": {kv.Value}")) + "}");
        Assert.Equal(field, e.Field);
        Assert.Contains($"got {value}", e.Message);
        Assert.Contains("1..65535", e.Message);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("127.0.0.1")]
    [InlineData("localhost")]
    public void SamePortOnSameHostIsRejected(string? rightIp)
    {
        string ip = rightIp is null ? "" : $"\"right_ip\": \"{rightIp}\", ";
        var e = Fails("{" + ip + "\"port\": 5000, \"right_port\": 5000, \"rank\": 0, \"world_size\": 2 }");
        Assert.Equal("right_port", e.Field);
        Assert.Contains("5000", e.Message);
    }

    [Fact]
    public void SamePortOnAnotherHostIsFine()
    {
        var c = RingConfig.Parse("""{ "right_ip": "10.0.0.2", "port": 5000, "right_port": 5000, "rank": 0, "world_size": 2 }""", Src);
        Assert.Equal(5000, c.RightPort);
    }

    [Fact]
    public void WorldSizeOneNeedsNoDistinctPorts()
    {
        var c = RingConfig.Parse("""{ "port": 5000, "right_port": 5000, "rank": 0, "world_size": 1 }""", Src);
        Assert.Equal(1, c.WorldSize);
    }

    [Fact]
    public void WorkerWithMasterIpButNoPortIsRejected()
    {
        var e = Fails("""{ "master_ip": "10.0.0.1", "port": 5000, "right_port": 5001, "rank": 1, "world_size": 2 }""");
        Assert.Equal("master_port", e.Field);
        Assert.Contains("10.0.0.1", e.Message);
    }

    [Fact]
    public void WorkerWithMasterPortButNoIpIsRejected()
    {
        var e = Fails("""{ "master_port": 6000, "port": 5000, "right_port": 5001, "rank": 1, "world_size": 2 }""");
        Assert.Equal("master_ip", e.Field);
        Assert.Contains("6000", e.Message);
    }

    [Fact]
    public void UnusableMasterIpIsRejected()
    {
        var e = Fails("""{ "master_ip": "not an ip!", "master_port": 6000, "port": 5000, "right_port": 5001, "rank": 1, "world_size": 2 }""");
        Assert.Equal("master_ip", e.Field);
        Assert.Contains("'not an ip!'", e.Message);
    }

    [Fact]
    public void UnsetEnvironmentVariableIsNamed()
    {
        // Only this test touches RING_CONFIG; the override path is the other way in and is tested below.
        string? saved = Environment.GetEnvironmentVariable(RingConfig.EnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(RingConfig.EnvironmentVariable, null);
            var e = Assert.Throws<RingConfigException>(() => RingConfig.LoadFromEnvironment());
            Assert.Contains("RING_CONFIG", e.Message);
            Assert.Contains("not set", e.Message);

            string path = Path.Combine(Path.GetTempPath(), $"ring-env-{Guid.NewGuid():N}.json");
            File.WriteAllText(path, """{ "port": 5000, "right_port": 5001, "rank": 0, "world_size": 2 }""");
            Environment.SetEnvironmentVariable(RingConfig.EnvironmentVariable, path);
            Assert.Equal(path, RingConfig.LoadFromEnvironment().SourcePath);
            File.Delete(path);
        }
        finally
        {
            Environment.SetEnvironmentVariable(RingConfig.EnvironmentVariable, saved);
        }
    }

    [Fact]
    public void MasterPortEqualToPortOnThisMachineNamesBothFields()
    {
        var e = Fails("""{"master_ip": "0.0.0.0", "master_port": 12345, "port": 12345, "right_port": 12346, "rank": 0, "world_size": 2}""");
        Assert.Equal(Src + ": field 'master_port': 12345 equals 'port' (12345): rank 0's control endpoint and this rank's ring listener would " +
                     "share one port on this machine; give master_port a port of its own in every ring file", e.Message);
        Assert.Equal("master_port", e.Field);
        // A worker on another machine than rank 0 may use the same number for its own ring port.
        var worker = RingConfig.Parse("""{"master_ip": "192.168.1.10", "master_port": 12346, "port": 12346, "right_port": 12345, "right_ip": "192.168.1.10", "rank": 1, "world_size": 2}""", Src);
        Assert.Equal(12346, worker.Port);
        Fails("""{"master_ip": "127.0.0.1", "master_port": 12346, "port": 12346, "right_port": 12345, "rank": 1, "world_size": 2}""");
    }

    [Fact]
    public void ADirectoryGivenAsTheRingFileIsCalledADirectory()
    {
        var dir = Directory.CreateTempSubdirectory("ring-dir-").FullName;
        try
        {
            var e = Assert.Throws<RingConfigException>(() => RingConfig.Load(dir));
            Assert.Equal($"{dir}: is a directory, not a ring file (full path '{dir}'); give the path of this rank's JSON file, such as {Path.Combine(dir, "ring_0.json")}", e.Message);
        }
        finally
        {
            Directory.Delete(dir);
        }
    }

    [Fact]
    public void MissingFileIsNamed()
    {
        string path = Path.Combine(Path.GetTempPath(), $"no-such-ring-{Guid.NewGuid():N}.json");
        var e = Assert.Throws<RingConfigException>(() => RingConfig.LoadFromEnvironment(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void OverridePathWinsAndLoadsFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ring-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """{ "port": 5000, "right_port": 5001, "rank": 0, "world_size": 3, "extra": 1 }""");
        try
        {
            var c = RingConfig.LoadFromEnvironment(path);
            Assert.Equal(3, c.WorldSize);
            Assert.Equal(path, c.SourcePath);
            Assert.Contains(path, Assert.Single(c.Warnings));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void LoopbackConfigsFormARingAndRoundTripThroughJson()
    {
        var configs = RingConfig.ForLoopback(5);
        Assert.Equal(5, configs.Select(c => c.Port).Distinct().Count());
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(configs[(i + 1) % 5].Port, configs[i].RightPort);
            var back = RingConfig.Parse(configs[i].ToJson(), "x");
            Assert.Equal(configs[i] with { SourcePath = "x", Warnings = back.Warnings }, back);
            Assert.Empty(back.Warnings);
        }
    }

    [Fact]
    public void LoopbackPortsAreFreeAndBelowTheKernelsEphemeralRange()
    {
        const string range = "/proc/sys/net/ipv4/ip_local_port_range";
        if (!File.Exists(range)) return; // not Linux: the OS chooses, and nothing more can be checked
        int ephemeralLow = int.Parse(File.ReadAllText(range).Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[0]);
        var ports = RingConfig.FreeLoopbackPorts(8);
        Assert.Equal(8, ports.Distinct().Count());
        foreach (int port in ports)
        {
            Assert.InRange(port, 1024, ephemeralLow - 1);
            using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port);
            listener.Start(); // free: a rank can bind it
        }
    }

    [Fact]
    public void SocketSpinIsOnOnlyWhenEveryBusyThreadHasACore()
    {
        int cores = Environment.ProcessorCount;
        var local = RingConfig.ForLoopback(2)[0] with { WorldSize = cores + 1 };
        var remote = local with { RightIp = "10.1.2.3" };
        var auto = new RingOptions();
        // A one-host ring with more ranks than cores must sleep, or a spinning rank starves the one it waits for.
        Assert.Equal(TimeSpan.Zero, auto.SpinFor(local));
        // One rank per machine: spinning costs nothing anyone else needs.
        Assert.Equal(RingOptions.DefaultSpin, auto.SpinFor(remote));
        Assert.Equal(TimeSpan.Zero, (auto with { BusyThreadsOnThisMachine = cores + 1 }).SpinFor(remote));
        Assert.Equal(RingOptions.DefaultSpin, (auto with { BusyThreadsOnThisMachine = 1 }).SpinFor(local));
        Assert.Equal(TimeSpan.FromMicroseconds(5), (auto with { SpinBeforeSleep = TimeSpan.FromMicroseconds(5) }).SpinFor(local));
    }
}
