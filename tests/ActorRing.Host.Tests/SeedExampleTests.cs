using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>
/// The mistral.rs ring example for one machine (master 0.0.0.0:1234, ring ports 12345/12346), as two
/// <c>actorring serve</c> processes started by hand in either order; rank 0 is driven through stdin.
/// </summary>
public sealed class SeedExampleTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);

    private const string Rank0 = """{"master_ip": "0.0.0.0", "master_port": 1234, "port": 12345, "right_port": 12346, "rank": 0, "world_size": 2}""";
    private const string Rank1 = """{"master_ip": "0.0.0.0", "master_port": 1234, "port": 12346, "right_port": 12345, "rank": 1, "world_size": 2}""";

    private static async Task<string> WorldSizeOneText(string prompt, int maxTokens)
    {
        using var p = new RankProcess(["generate", "--prompt", prompt, "--max-tokens", maxTokens.ToString(), "--json"]);
        Assert.Equal(0, await p.WaitAsync(Deadline));
        return JsonDocument.Parse(p.Stdout).RootElement.GetProperty("text").GetString()!;
    }

    private static string Escaped(string text) => text.Replace("\\", "\\\\").Replace("\r", "\\r").Replace("\n", "\\n");

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Two_serve_processes_answer_prompts_from_stdin_in_either_start_order(bool workerFirst)
    {
        string expected = await WorldSizeOneText("Once upon a time", 40);
        var dir = Directory.CreateTempSubdirectory("actorring-seed-").FullName;
        File.WriteAllText(Path.Combine(dir, "ring_0.json"), Rank0);
        File.WriteAllText(Path.Combine(dir, "ring_1.json"), Rank1);
        Dictionary<string, string> Env(int rank) => new()
        {
            ["RING_CONFIG"] = Path.Combine(dir, $"ring_{rank}.json"),
            ["ACTORRING_SECRET"] = TestSecrets.Cluster,
        };

        RankProcess? worker = null, master = null;
        try
        {
            RankProcess StartWorker() => new(["serve"], Env(1));
            RankProcess StartMaster() => new(["serve", "--interactive", "--max-tokens", "40"], Env(0), redirectStdin: true);
            if (workerFirst)
            {
                worker = StartWorker();
                await Task.Delay(2000); // rank 0 is not up yet: the worker keeps dialing it
                master = StartMaster();
            }
            else
            {
                master = StartMaster();
                await Task.Delay(2000); // rank 0 waits, with the prompt already queued on its stdin
                worker = StartWorker();
            }
            // One prompt per line; /reset clears the conversation so the third answer must equal the first.
            await master.StandardInput.WriteAsync("Once upon a time\nThe end.\n/reset\nOnce upon a time\n");
            master.StandardInput.Close();

            int code = await master.WaitAsync(Deadline);
            Assert.True(code == 0, $"rank 0 exited with {code}\nstderr:\n{master.Stderr}\nworker:\n{worker.Stderr}");
            var lines = master.Stdout.Split('\n');
            Assert.True(lines.Length >= 4, $"expected 4 output lines, got:\n{master.Stdout}\nstderr:\n{master.Stderr}");
            Assert.Equal(Escaped(expected), lines[0]);
            Assert.NotEqual("", lines[1]); // the continuation answered too (its text depends on the conversation)
            Assert.Equal("", lines[2]);    // /reset acknowledges with an empty line
            Assert.Equal(Escaped(expected), lines[3]);
            Assert.Contains("rank 1/2: registered with the coordinator at akka.tcp://actorring@127.0.0.1:1234", worker.Stderr);
        }
        finally
        {
            master?.Dispose();
            worker?.Dispose();
            Directory.Delete(dir, recursive: true);
        }
    }
}
