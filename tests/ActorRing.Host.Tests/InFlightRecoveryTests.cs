using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace ActorRing.Host.Tests;

/// <summary>
/// Requests in flight when a rank is lost, as an HTTP client sees them, with real <c>serve</c> processes on loopback:
/// a worker killed (-9) mid-generation and restarted under steady load, rank 0 killed mid-generation and restarted,
/// and graceful stops. Outputs are compared with the same requests answered by the undisturbed cluster.
/// </summary>
public sealed class InFlightRecoveryTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);

    /// <summary>A greedy and a seeded request: a resumed request must give the same text, so a sampler's RNG must
    /// continue where it was, not restart.</summary>
    private static readonly string[] Bodies =
    [
        """{"prompt":"Once upon a time","max_tokens":120,"temperature":0,"stream":true}""",
        """{"prompt":"The little dog","max_tokens":120,"temperature":0.9,"seed":7,"stream":true}""",
    ];

    private sealed record Streamed(int Status, string Text, string? Error, bool Done, TimeSpan Started, TimeSpan Ended);

    /// <summary>One streamed completion, read to its end. <paramref name="onFirstText"/> runs once the first text
    /// arrived (the request is then in flight).</summary>
    private static async Task<Streamed> StreamAsync(HttpClient http, string body, Stopwatch clock, Func<Task>? onFirstText = null)
    {
        var started = clock.Elapsed;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = HttpCluster.Body(body) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if (response.StatusCode != HttpStatusCode.OK)
            return new Streamed((int)response.StatusCode, "", await response.Content.ReadAsStringAsync(), false, started, clock.Elapsed);
        var text = new StringBuilder();
        string? error = null;
        bool done = false;
        try
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            while (await reader.ReadLineAsync() is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                var data = line["data: ".Length..];
                if (data == "[DONE]")
                {
                    done = true;
                    break;
                }
                var json = JsonDocument.Parse(data).RootElement;
                if (json.TryGetProperty("error", out var e))
                {
                    error = e.GetProperty("message").GetString();
                    continue;
                }
                text.Append(json.GetProperty("choices")[0].GetProperty("text").GetString());
                if (onFirstText is not null && text.Length > 0)
                {
                    var first = onFirstText;
                    onFirstText = null;
                    await first();
                }
            }
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            error = $"connection: {e.Message}";
        }
        return new Streamed(200, text.ToString(), error, done, started, clock.Elapsed);
    }

    private static string NonStreaming(string body) => body.Replace("\"stream\":true", "\"stream\":false");

    private static async Task<string> ReferenceAsync(HttpClient http, string body)
    {
        using var response = await http.PostAsync("/v1/completions", HttpCluster.Body(NonStreaming(body)));
        string json = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, json);
        return JsonDocument.Parse(json).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    private static async Task<(HttpStatusCode Status, string Body)> HealthAsync(HttpClient http)
    {
        using var health = await http.GetAsync("/health");
        return (health.StatusCode, await health.Content.ReadAsStringAsync());
    }

    private static async Task<TimeSpan> WaitHealthAsync(HttpClient http, HttpStatusCode wanted, Stopwatch clock, TimeSpan timeout)
    {
        var until = clock.Elapsed + timeout;
        while (true)
        {
            var (status, body) = await HealthAsync(http);
            if (status == wanted) return clock.Elapsed;
            if (clock.Elapsed > until) throw new TimeoutException($"/health did not turn {(int)wanted} within {timeout.TotalSeconds:0} s: {(int)status} {body}");
            await Task.Delay(50);
        }
    }

    private static string[] MasterArgs(int port) => ["--http-port", port.ToString(), "--context", "512"];

    private static readonly string[] WorkerArgs = ["--context", "512"];

    private static string ServingLine(int port) => $"actorring: serving stories260K on http://127.0.0.1:{port}/v1";

    /// <summary>A 2-rank cluster whose rank 0 serves HTTP on a free port, once it says it is serving.</summary>
    private static async Task<(int Port, RankProcess Master, RankProcess Worker)> StartAsync(LoopbackRing ring)
    {
        int port = LoopbackRing.FreePort();
        var master = ring.Serve(0, MasterArgs(port));
        var worker = ring.Serve(1, WorkerArgs);
        await master.WaitForLogAsync(ServingLine(port), Deadline);
        return (port, master, worker);
    }

    private static HttpClient Client(int port) => new() { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = Deadline };

    [Fact]
    public async Task Under_steady_load_a_worker_killed_mid_generation_and_restarted_loses_no_request_and_changes_no_output()
    {
        using var ring = new LoopbackRing(2);
        await ring.RunAsync(async () =>
        {
            var (port, master, worker) = await StartAsync(ring);
            using var http = Client(port);
            var references = new string[Bodies.Length];
            for (int i = 0; i < Bodies.Length; i++) references[i] = await ReferenceAsync(http, Bodies[i]);

            // Three clients send requests back to back. A request refused with 503 while the ring is down (new work
            // is not queued behind a lost rank) is retried after a short pause, as a client would.
            var clock = Stopwatch.StartNew();
            using var stopLoad = new CancellationTokenSource();
            var results = new List<(int Kind, Streamed Result)>();
            int refused = 0;
            async Task ClientLoop(int id)
            {
                for (int n = id; !stopLoad.IsCancellationRequested; n++)
                {
                    int kind = n % Bodies.Length;
                    var r = await StreamAsync(http, Bodies[kind], clock);
                    if (r.Status == 503)
                    {
                        Interlocked.Increment(ref refused);
                        await Task.Delay(100);
                        continue;
                    }
                    lock (results) results.Add((kind, r));
                }
            }
            var clients = Enumerable.Range(0, 3).Select(ClientLoop).ToArray();
            while (true)
            {
                lock (results) if (results.Count >= 3) break;
                await Task.Delay(20);
            }

            // kill -9 while requests are mid-stream (a stream in flight is the next text line away).
            worker.Signal("KILL");
            var failedAt = clock.Elapsed;
            await WaitHealthAsync(http, HttpStatusCode.ServiceUnavailable, clock, TimeSpan.FromSeconds(15));
            var (_, downHealth) = await HealthAsync(http);
            var refusedNow = await StreamAsync(http, Bodies[0], clock);
            Assert.Equal(503, refusedNow.Status);
            Assert.True(refusedNow.Ended - refusedNow.Started < TimeSpan.FromSeconds(3), $"a new request while the ring is down took {(refusedNow.Ended - refusedNow.Started).TotalSeconds:0.0} s to be refused");

            var restartedAt = clock.Elapsed;
            ring.Serve(1, WorkerArgs);
            var readyAt = await WaitHealthAsync(http, HttpStatusCode.OK, clock, Deadline);
            await Task.Delay(1500); // serve a little after the recovery too
            stopLoad.Cancel();
            await Task.WhenAll(clients).WaitAsync(Deadline);

            List<(int Kind, Streamed Result)> all;
            lock (results) all = results.ToList();
            var inFlight = all.Where(r => r.Result.Started < failedAt && r.Result.Ended > restartedAt).ToList();
            int lost = all.Count(r => !r.Result.Done || r.Result.Error is not null);
            int wrong = all.Count(r => r.Result.Done && r.Result.Error is null && r.Result.Text != references[r.Kind]);
            double lastByteMs = inFlight.Count > 0 ? inFlight.Max(r => (r.Result.Ended - failedAt).TotalMilliseconds) : double.NaN;
            output.WriteLine($"steady load over one worker kill -9 and restart: {all.Count} requests completed ({inFlight.Count} were in flight at the kill), " +
                $"lost {lost}, wrong output {wrong}, refused with 503 while down {refused}; failure to in-flight requests' last byte " +
                $"{lastByteMs:0} ms (the restart came {(restartedAt - failedAt).TotalMilliseconds:0} ms after the kill); restart to ready " +
                $"{(readyAt - restartedAt).TotalMilliseconds:0} ms");

            Assert.Contains("rank 1", downHealth);
            Assert.Contains("request(s) in flight are suspended until it is back", downHealth);
            Assert.NotEmpty(inFlight);
            Assert.All(inFlight, r => Assert.True(r.Result.Text.Length > 0));
            Assert.Equal(0, lost);
            Assert.Equal(0, wrong);
            Assert.Contains("rank 0: resuming", master.Stderr);
            Assert.Matches(@"recovered \d+\.\d s after the ring was lost", master.Stderr);
        });
    }

    [Fact]
    public async Task Rank_0_killed_mid_generation_and_restarted_the_client_sees_the_failure_and_the_next_request_is_answered_without_reloading_the_worker()
    {
        using var ring = new LoopbackRing(2);
        await ring.RunAsync(async () =>
        {
            var (port, master, worker) = await StartAsync(ring);
            using var http = Client(port);
            string reference = await ReferenceAsync(http, Bodies[1]);

            var clock = Stopwatch.StartNew();
            var broken = await StreamAsync(http, Bodies[1], clock, () =>
            {
                master.KillProcessOnly();
                return Task.CompletedTask;
            });
            // The client sees the failure: the stream ends without [DONE].
            Assert.False(broken.Done);
            Assert.NotNull(broken.Error);
            Assert.True(reference.StartsWith(broken.Text, StringComparison.Ordinal), $"partial text '{broken.Text}' is not a prefix of '{reference}'");

            await worker.WaitForLogAsync("is gone; closing the ring and dialing it again", Deadline);
            var again = ring.Serve(0, MasterArgs(port));
            await again.WaitForLogAsync(ServingLine(port), Deadline);
            var next = await StreamAsync(http, Bodies[1], clock);
            Assert.True(next.Done, next.Error);
            Assert.Equal(reference, next.Text);
            Assert.Single(Regex.Matches(worker.Stderr, "rank 1/2: loading shard"));
            Assert.False(worker.HasExited);
        });
    }

    [Fact]
    public async Task A_worker_stopped_with_SIGTERM_mid_generation_is_announced_and_the_request_resumes_when_it_is_back_and_rank_0s_SIGTERM_fails_requests_at_once()
    {
        using var ring = new LoopbackRing(2);
        await ring.RunAsync(async () =>
        {
            var (port, master, worker) = await StartAsync(ring);
            using var http = Client(port);
            string reference = await ReferenceAsync(http, Bodies[0]);
            var clock = Stopwatch.StartNew();

            // Worker: the goodbye reaches rank 0 at once (no failure-detector wait), the request waits for it.
            TimeSpan stoppedAt = default;
            var resumed = StreamAsync(http, Bodies[0], clock, () =>
            {
                worker.Signal("STOP"); // hold the ring mid-request, so the SIGTERM lands mid-generation
                worker.Terminate();
                stoppedAt = clock.Elapsed;
                worker.Signal("CONT");
                return Task.CompletedTask;
            });
            await master.WaitForLogAsync("rank 1 is shutting down: the process is stopping; waiting for it to register again", TimeSpan.FromSeconds(10));
            Assert.Equal(0, await worker.WaitAsync(TimeSpan.FromSeconds(20)));
            Assert.False(resumed.IsCompleted, "the request should wait for the rank to come back");
            ring.Serve(1, WorkerArgs);
            var r = await resumed.WaitAsync(Deadline);
            Assert.True(r.Done, r.Error);
            Assert.Null(r.Error);
            Assert.Equal(reference, r.Text);

            // Rank 0: its own clients hear at once that it is stopping, with an error event.
            var failed = StreamAsync(http, """{"prompt":"Once upon a time","max_tokens":500,"temperature":0,"stream":true}""", clock, () =>
            {
                stoppedAt = clock.Elapsed;
                master.Terminate();
                return Task.CompletedTask;
            });
            var f = await failed.WaitAsync(Deadline);
            Assert.True(f.Ended - stoppedAt < TimeSpan.FromSeconds(5), $"the client heard of rank 0's stop after {(f.Ended - stoppedAt).TotalSeconds:0.0} s");
            Assert.NotNull(f.Error);
            Assert.Equal(0, await master.WaitAsync(TimeSpan.FromSeconds(30)));
        });
    }
}
