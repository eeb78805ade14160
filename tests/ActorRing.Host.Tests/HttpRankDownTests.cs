using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>The HTTP API while a rank is missing: 503s that name it, and a stream whose rank does not come back within
/// --recovery-timeout ends with an error event instead of a silent cut. It kills a rank, so it runs a cluster of its own.</summary>
public sealed class HttpRankDownTests
{
    [Fact]
    public async Task A_missing_rank_gets_503s_naming_it_and_a_stream_whose_rank_does_not_come_back_ends_with_an_error_event()
    {
        using var ring = new LoopbackRing(2);
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        await ring.RunAsync(async () =>
        {
            var master = ring.Serve(0, ["--http-port", port.ToString(), "--recovery-timeout", "2"]);
            await master.WaitForLogAsync($"[http] listening on http://127.0.0.1:{port}", HttpCluster.Deadline);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };

            // Rank 1 has not started: health and requests say so, naming it.
            using (var health = await http.GetAsync("/health"))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
                var json = JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement;
                Assert.Equal("unavailable", json.GetProperty("status").GetString());
                Assert.Equal(1, json.GetProperty("ranks_ready").GetInt32());
                Assert.Contains("waiting for ranks: 1/2 registered (missing 1)", json.GetProperty("message").GetString());
            }
            using (var chat = await http.PostAsync("/v1/chat/completions", HttpCluster.Body("""{"messages":[{"role":"user","content":"Hi"}],"stream":true}""")))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, chat.StatusCode);
                var error = JsonDocument.Parse(await chat.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
                Assert.Contains("(missing 1)", error.GetProperty("message").GetString());
                Assert.Equal("server_error", error.GetProperty("type").GetString());
            }

            var worker = ring.Serve(1);
            await master.WaitForLogAsync("actorring: serving stories260K on", HttpCluster.Deadline);
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = HttpCluster.Body("""{"prompt":"Once upon a time","max_tokens":500,"temperature":0,"stream":true}"""),
            };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: {", await reader.ReadLineAsync());
            worker.Kill(); // mid-stream
            var events = HttpCluster.SseEvents(await reader.ReadToEndAsync());

            Assert.Equal("[DONE]", events[^1]);
            var error2 = JsonDocument.Parse(events[^2]).RootElement.GetProperty("error");
            Assert.Contains("rank 1", error2.GetProperty("message").GetString());
            Assert.Contains("within the recovery timeout of 2 s", error2.GetProperty("message").GetString());
            Assert.Equal("cluster_unavailable", error2.GetProperty("code").GetString());
            // /health reports the coordinator's own view, which names the lost rank too.
            HttpStatusCode afterStatus = HttpStatusCode.OK;
            string afterBody = "";
            for (var wait = System.Diagnostics.Stopwatch.StartNew(); wait.Elapsed < TimeSpan.FromSeconds(15); await Task.Delay(200))
            {
                using var after = await http.GetAsync("/health");
                afterStatus = after.StatusCode;
                afterBody = await after.Content.ReadAsStringAsync();
                if (afterStatus == HttpStatusCode.ServiceUnavailable && afterBody.Contains("rank 1", StringComparison.Ordinal)) break;
            }
            Assert.Equal(HttpStatusCode.ServiceUnavailable, afterStatus);
            Assert.Contains("rank 1", afterBody);
        });
    }
}
