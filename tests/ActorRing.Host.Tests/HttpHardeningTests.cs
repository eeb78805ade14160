using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using ActorRing.Transport;

namespace ActorRing.Host.Tests;

/// <summary>
/// One single-rank <c>serve</c> with <c>--http-timeout 2</c>, so the slow-client limits (headers within 2 s, a body
/// flowing after a 2 s grace, idle connections closed after 6 s) act within seconds instead of the default 10/30 s.
/// </summary>
public sealed class HardenedServer : IAsyncLifetime
{
    public const int TimeoutSeconds = 2;
    private readonly string _dir = Directory.CreateTempSubdirectory("actorring-hardening-").FullName;
    private RankProcess? _server;

    public int Port { get; private set; }

    public string Log => _server?.Stderr ?? "";

    public async Task InitializeAsync()
    {
        var ring = RingConfig.ForLoopback(1)[0];
        // No master: a lone rank has no control port, only its HTTP API.
        string file = Path.Combine(_dir, "ring_0.json");
        File.WriteAllText(file, $$"""{"port":{{ring.Port}},"right_port":{{ring.Port}},"right_ip":"127.0.0.1","rank":0,"world_size":1}""");
        Port = LoopbackRing.FreePort();
        _server = new RankProcess(["serve", "--http-port", Port.ToString(), "--http-timeout", TimeoutSeconds.ToString(), "--context", "512"],
            new Dictionary<string, string> { ["RING_CONFIG"] = file });
        await _server.WaitForLogAsync($"actorring: serving stories260K on http://127.0.0.1:{Port}/v1", HttpCluster.Deadline);
    }

    public Task DisposeAsync()
    {
        _server?.Dispose();
        Directory.Delete(_dir, recursive: true);
        return Task.CompletedTask;
    }
}

/// <summary>Hostile HTTP clients, on raw sockets: bodies that are not UTF-8, nest too deep or have no length and
/// grow too large, and clients that send too slowly or not at all. Each gets a 4xx or is cut off, and the server
/// keeps answering everyone else.</summary>
public sealed class HttpHardeningTests(HardenedServer server) : IClassFixture<HardenedServer>
{
    private static readonly TimeSpan ReadDeadline = TimeSpan.FromSeconds(30);

    private async Task<string> ExchangeAsync(byte[] request)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, server.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(request);
        using var deadline = new CancellationTokenSource(ReadDeadline);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return await reader.ReadToEndAsync(deadline.Token); // "Connection: close": the server ends the exchange
    }

    private static byte[] Post(byte[] body) =>
        [.. Encoding.ASCII.GetBytes($"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {body.Length}\r\n\r\n"), .. body];

    /// <summary>The status line and the JSON error of a raw HTTP/1.1 answer (chunked or not).</summary>
    private static (string StatusLine, JsonElement Error) ParseError(string answer)
    {
        string statusLine = answer[..answer.IndexOf("\r\n", StringComparison.Ordinal)];
        int start = answer.IndexOf("{\"error\"", StringComparison.Ordinal);
        Assert.True(start >= 0, $"no OpenAI error body in: {answer}");
        int end = answer.LastIndexOf('}') + 1;
        return (statusLine, JsonDocument.Parse(answer[start..end]).RootElement.GetProperty("error").Clone());
    }

    [Theory]
    [InlineData(new byte[] { 0xFF, 0xFE }, 11, "0xFF")]       // not UTF-8 at all (UTF-16's byte order mark)
    [InlineData(new byte[] { 0xC3 }, 11, "0xC3")]             // a character cut short
    [InlineData(new byte[] { 0xED, 0xA0, 0x80 }, 11, "0xED")] // an encoded surrogate half, which UTF-8 forbids
    public async Task A_body_that_is_not_UTF8_gets_400_naming_the_byte_and_its_offset(byte[] bad, int offset, string shown)
    {
        byte[] body = [.. "{\"prompt\":\""u8.ToArray(), .. bad, .. "abc\",\"max_tokens\":2}"u8.ToArray()];
        var (status, error) = ParseError(await ExchangeAsync(Post(body)));
        Assert.StartsWith("HTTP/1.1 400 ", status);
        Assert.Equal($"the request body is not valid UTF-8: byte {shown} at offset {offset} does not start or continue a UTF-8 character; send the JSON encoded as UTF-8",
            error.GetProperty("message").GetString());
        Assert.Equal("invalid_utf8", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task JSON_nested_deeper_than_64_levels_gets_400_and_64_levels_are_still_read()
    {
        string Nested(int depth) => $$"""{"prompt":{{new string('[', depth - 1)}}1{{new string(']', depth - 1)}},"max_tokens":1}""";
        var (status, error) = ParseError(await ExchangeAsync(Post(Encoding.UTF8.GetBytes(Nested(65)))));
        Assert.StartsWith("HTTP/1.1 400 ", status);
        Assert.StartsWith("the request body is not valid JSON: The maximum configured depth of 64 has been exceeded", error.GetProperty("message").GetString());
        Assert.Equal("invalid_json", error.GetProperty("code").GetString());

        // At the limit the parser reads it, and the request fails on its meaning instead.
        (status, error) = ParseError(await ExchangeAsync(Post(Encoding.UTF8.GetBytes(Nested(64)))));
        Assert.StartsWith("HTTP/1.1 400 ", status);
        Assert.Equal("prompt[0]", error.GetProperty("param").GetString());

        // Hostile depth costs nothing more: 100 000 brackets are refused the same way.
        (status, error) = ParseError(await ExchangeAsync(Post(Encoding.ASCII.GetBytes(new string('[', 100_000)))));
        Assert.StartsWith("HTTP/1.1 400 ", status);
        Assert.Contains("maximum configured depth of 64", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task A_client_that_hangs_up_mid_body_is_counted_as_cancelled_not_as_an_invalid_request()
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{server.Port}") };
        async Task<(int Cancelled, int Invalid)> Counts()
        {
            string text = await http.GetStringAsync("/metrics");
            int Count(string outcome) => (int)double.Parse(text.Split('\n').Single(l => l.StartsWith($"actorring_requests_total{{outcome=\"{outcome}\"}} ", StringComparison.Ordinal)).Split(' ')[1],
                System.Globalization.CultureInfo.InvariantCulture);
            return (Count("cancelled"), Count("invalid"));
        }
        var before = await Counts();
        async Task<(int Cancelled, int Invalid)> HangUpAfter(string request, (int Cancelled, int Invalid) counts)
        {
            using (var tcp = new TcpClient())
            {
                await tcp.ConnectAsync(IPAddress.Loopback, server.Port);
                await tcp.GetStream().WriteAsync(Encoding.ASCII.GetBytes(request));
                await Task.Delay(200);
            }
            var clock = Stopwatch.StartNew();
            var after = await Counts();
            while (after == counts && clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                await Task.Delay(100);
                after = await Counts();
            }
            return after;
        }
        const string Head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
        // 10 of the 100 bytes it announces, then the client closes.
        var cut = await HangUpAfter(Head + "Content-Length: 100\r\n\r\n{\"prompt\":", before);
        Assert.Equal((before.Cancelled + 1, before.Invalid), cut);
        // Chunked: 10 bytes of a 32-byte chunk, then the client closes.
        var chunkCut = await HangUpAfter(Head + "Transfer-Encoding: chunked\r\n\r\n20\r\n{\"prompt\":", cut);
        Assert.Equal((before.Cancelled + 2, before.Invalid), chunkCut);
        // A complete bad body is still an invalid request, and so is a malformed chunk.
        var (status, _) = ParseError(await ExchangeAsync(Post("{\"prompt\":"u8.ToArray())));
        Assert.StartsWith("HTTP/1.1 400 ", status);
        var (badChunk, chunkError) = ParseError(await ExchangeAsync(Encoding.ASCII.GetBytes(
            Head + "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")));
        Assert.StartsWith("HTTP/1.1 400 ", badChunk);
        Assert.Contains("the request body could not be read", chunkError.GetProperty("message").GetString());
        Assert.Equal((before.Cancelled + 2, before.Invalid + 2), await Counts());
    }

    [Fact]
    public async Task A_chunked_body_without_a_length_is_cut_at_4_MiB_with_413()
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, server.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"));
        byte[] chunk = [.. Encoding.ASCII.GetBytes($"{64 * 1024:x}\r\n"), .. Enumerable.Repeat((byte)'a', 64 * 1024), .. "\r\n"u8.ToArray()];
        int sent = 0;
        try
        {
            // 5 MiB, more than the limit; the server may stop reading (and close) once it has refused the body.
            for (; sent < 80; sent++) await stream.WriteAsync(chunk);
        }
        catch (IOException)
        {
        }
        using var deadline = new CancellationTokenSource(ReadDeadline);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var (status, error) = ParseError(await reader.ReadToEndAsync(deadline.Token));
        Assert.StartsWith("HTTP/1.1 413 ", status);
        Assert.Equal("the request body is larger than 4194304 bytes", error.GetProperty("message").GetString());
        Assert.True(sent >= 64, $"the server refused after {sent} chunks of 64 KiB, before the body reached 4 MiB");
    }

    /// <summary>Holds a connection open, sending <paramref name="first"/> then one byte of <paramref name="drip"/>
    /// every half second, until the server closes it; returns what the server sent and when it closed.</summary>
    private async Task<(string Answer, TimeSpan ClosedAfter)> SlowClientAsync(string? first, char? drip)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, server.Port);
        var clock = Stopwatch.StartNew();
        var stream = tcp.GetStream();
        if (first is not null) await stream.WriteAsync(Encoding.ASCII.GetBytes(first));
        var received = new MemoryStream();
        var buffer = new byte[4096];
        using var deadline = new CancellationTokenSource(ReadDeadline);
        var read = stream.ReadAsync(buffer, deadline.Token).AsTask();
        while (true)
        {
            if (await Task.WhenAny(read, Task.Delay(500)) == read)
            {
                int n;
                try
                {
                    n = await read;
                }
                catch (IOException)
                {
                    n = 0; // reset by the server: closed as well
                }
                if (n == 0) return (Encoding.ASCII.GetString(received.ToArray()), clock.Elapsed);
                received.Write(buffer, 0, n);
                read = stream.ReadAsync(buffer, deadline.Token).AsTask();
                continue;
            }
            if (drip is { } c)
            {
                try
                {
                    await stream.WriteAsync(new[] { (byte)c });
                }
                catch (IOException)
                {
                    // the server closed its side; the pending read sees it
                }
            }
        }
    }

    [Fact]
    public async Task Slow_and_idle_clients_are_cut_off_while_the_server_keeps_answering_others()
    {
        var idle = SlowClientAsync(null, null);
        var slowHeaders = SlowClientAsync("POST /v1/completions HTTP/1.1\r\nHost: x\r\n", 'X');
        var slowBody = SlowClientAsync("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"prompt\":\"", 'a');

        // While they hang on, a normal client gets its completion.
        await Task.Delay(500);
        string answer = await ExchangeAsync(Post("""{"prompt":"Once upon a time","max_tokens":4,"temperature":0}"""u8.ToArray()));
        Assert.StartsWith("HTTP/1.1 200 ", answer);
        Assert.Contains("\"finish_reason\":\"length\"", answer);

        int t = HardenedServer.TimeoutSeconds;
        var (headersAnswer, headersClosed) = await slowHeaders;
        Assert.StartsWith("HTTP/1.1 408 ", headersAnswer);
        Assert.InRange(headersClosed.TotalSeconds, t - 0.5, t + 4); // Kestrel checks its deadlines once a second

        var (bodyAnswer, bodyClosed) = await slowBody;
        var (status, error) = ParseError(bodyAnswer);
        Assert.StartsWith("HTTP/1.1 408 ", status);
        Assert.StartsWith("the request body could not be read: Reading the request body timed out due to data arriving too slowly", error.GetProperty("message").GetString());
        Assert.InRange(bodyClosed.TotalSeconds, t - 0.5, t + 4);

        var (idleAnswer, idleClosed) = await idle;
        Assert.Equal("", idleAnswer);
        Assert.InRange(idleClosed.TotalSeconds, 3 * t - 0.5, 3 * t + 4);

        // Nobody's misbehaviour left a mark: the server answers, and logged no error with a stack trace.
        answer = await ExchangeAsync(Encoding.ASCII.GetBytes("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 200 ", answer);
        Assert.DoesNotContain("fail:", server.Log);
        Assert.DoesNotContain("   at ", server.Log);
    }
}
