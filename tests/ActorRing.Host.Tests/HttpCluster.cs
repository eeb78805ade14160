using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>
/// One real 2-process <c>serve</c> cluster on loopback, with the HTTP API on rank 0 behind an API key, shared by
/// every test of the "http cluster" collection (starting one takes seconds; the tests only send requests). It also
/// holds the reference that greedy HTTP answers must equal: <c>actorring generate</c> at world size 1.
/// </summary>
public sealed class HttpCluster : IAsyncLifetime
{
    public const string ApiKey = "http-test-key";
    public const string ModelId = "stories260K";
    public const string Prompt = "Once upon a time";
    public const int ReferenceTokens = 24;
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(120);

    private readonly LoopbackRing _ring = new(2);
    private RankProcess? _master;

    public Uri BaseUrl { get; private set; } = null!;

    /// <summary>A client that sends the API key, as every user of this cluster must.</summary>
    public HttpClient Http { get; private set; } = null!;

    /// <summary><c>generate --prompt "Once upon a time" --max-tokens 24 --json</c>: its text and ids.</summary>
    public string ReferenceText { get; private set; } = "";
    public int[] ReferenceIds { get; private set; } = [];

    public string MasterLog => _master?.Stderr ?? "";

    public async Task InitializeAsync()
    {
        int port = LoopbackRing.FreePort();
        var apiKey = new Dictionary<string, string> { ["ACTORRING_API_KEY"] = ApiKey };
        _master = _ring.Serve(0, ["--http-port", port.ToString(), "--context", "512"], environment: apiKey);
        _ring.Serve(1, ["--context", "512"], environment: apiKey);
        using (var reference = new RankProcess(["generate", "--prompt", Prompt, "--max-tokens", ReferenceTokens.ToString(), "--json"]))
        {
            Assert.Equal(0, await reference.WaitAsync(Deadline));
            var json = JsonDocument.Parse(reference.Stdout).RootElement;
            ReferenceText = json.GetProperty("text").GetString()!;
            ReferenceIds = json.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        }
        BaseUrl = new Uri($"http://127.0.0.1:{port}");
        Http = NewClient(withKey: true);
        await _master.WaitForLogAsync($"actorring: serving {ModelId} on http://127.0.0.1:{port}/v1", Deadline);
    }

    public HttpClient NewClient(bool withKey)
    {
        var client = new HttpClient { BaseAddress = BaseUrl, Timeout = TimeSpan.FromSeconds(60) };
        if (withKey) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
        return client;
    }

    public static StringContent Body(string json) => new(json, Encoding.UTF8, "application/json");

    public async Task<(HttpStatusCode Status, JsonElement Json)> PostAsync(string path, string json, HttpClient? client = null)
    {
        using var response = await (client ?? Http).PostAsync(path, Body(json));
        string text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>The data lines of a Server-Sent Events body, in order ("[DONE]" included), checking the framing:
    /// every event is one "data: " line followed by a blank line.</summary>
    public static List<string> SseEvents(string body)
    {
        var events = new List<string>();
        var lines = body.Split('\n');
        for (int i = 0; i < lines.Length - 1; i++)
        {
            if (lines[i].Length == 0) continue;
            Assert.StartsWith("data: ", lines[i]);
            Assert.Equal("", lines[i + 1]); // one line per event, then the blank line that ends it
            events.Add(lines[i]["data: ".Length..]);
        }
        return events;
    }

    public Task DisposeAsync()
    {
        Http?.Dispose();
        _ring.Dispose();
        return Task.CompletedTask;
    }
}

[CollectionDefinition(Name)]
public sealed class HttpClusterCollection : ICollectionFixture<HttpCluster>
{
    public const string Name = "http cluster";
}
