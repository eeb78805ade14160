using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;

namespace ActorRing.Host.Tests;

/// <summary>The HTTP API byte for byte: error shapes, SSE framing, the tokenizer endpoints, health, metrics, the API
/// key, concurrent clients and a client that goes away.</summary>
[Collection(HttpClusterCollection.Name)]
public sealed class HttpApiTests(HttpCluster cluster)
{
    private const string Chat = "/v1/chat/completions";
    private const string User = """[{"role":"user","content":"Once upon a time"}]""";

    private static void AssertError(HttpStatusCode expected, (HttpStatusCode Status, JsonElement Json) answer, string? param, string messagePart)
    {
        Assert.Equal(expected, answer.Status);
        var error = answer.Json.GetProperty("error");
        Assert.Contains(messagePart, error.GetProperty("message").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("type").GetString()));
        Assert.True(error.TryGetProperty("code", out _));
    }

    [Theory]
    [InlineData("""{"messages":""", null, "not valid JSON")]
    [InlineData("""[1,2]""", null, "must be a JSON object")]
    [InlineData("""{"messages":[]}""", "messages", "messages must not be empty")]
    [InlineData("""{"messages":"hi"}""", "messages", "messages must be an array, got a string")]
    [InlineData("""{"messages":[{"role":"wizard","content":"x"}]}""", "messages[0].role", "got 'wizard'")]
    [InlineData("""{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}""", "messages[0].content[0].type", "got 'image_url'")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"temperature":2.5}""", "temperature", "temperature must be between 0 and 2, got 2.5")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}""", "temperature", "temperature must be a number, got a string")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"max_tokens":-5}""", "max_tokens", "max_tokens must be at least 1, got -5")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"max_tokens":5000}""", "max_tokens", "only 509 tokens fit")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"n":65}""", "n", "n must be between 1 and 64, got 65")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"top_logprobs":2}""", "top_logprobs", "needs logprobs: true")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"stop":[""]}""", "stop", "stop[0]")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}""", "stream_options", "only allowed with stream: true")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"x"}}}""", "response_format", "response_format.json_schema.schema is required")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"e":{"type":"string","format":"uri"}}}}}}""", "response_format", "response_format json_schema: the format \"uri\" at #/properties/e is not supported")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}""", "response_format", "must be \"text\", \"json_object\" or \"json_schema\", got \"yaml\"")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"response_format":"json"}""", "response_format", "response_format must be an object")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"response_format":{}}""", "response_format", "response_format.type is required")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"},"ignore_eos":true}""", "response_format", "ignore_eos cannot be used with it")]
    public async Task Bad_chat_requests_get_400_in_OpenAI_error_shape_naming_the_field(string body, string? param, string message)
    {
        AssertError(HttpStatusCode.BadRequest, await cluster.PostAsync(Chat, body), param, message);
    }

    [Theory]
    [InlineData("""{"prompt":"x","echo":true,"logprobs":1}""", "echo", "echo with logprobs asks for the prompt's log-probabilities")]
    [InlineData("""{"prompt":"x","best_of":2,"n":3}""", "best_of", "best_of (2) must be at least n (3)")]
    [InlineData("""{"prompt":"x","best_of":2,"stream":true}""", "best_of", "best_of cannot be used with stream")]
    [InlineData("""{"prompt":"x","best_of":65}""", "best_of", "best_of must be between 1 and 64, got 65")]
    [InlineData("""{"prompt":"x","suffix":"y"}""", "suffix", "suffix is not supported")]
    [InlineData("""{"prompt":[1, 99999]}""", "prompt", "token id 99999 is outside the vocabulary")]
    [InlineData("""{"max_tokens":3}""", "prompt", "prompt is required")]
    [InlineData("""{"prompt":"x","logprobs":9}""", "logprobs", "logprobs must be between 0 and 5, got 9")]
    [InlineData("""{"prompt":"x","logit_bias":{"7":150}}""", "logit_bias", "logit_bias[7] must be between -100 and 100, got 150")]
    [InlineData("""{"prompt":"x","logit_bias":{"seven":1}}""", "logit_bias", "logit_bias keys must be token ids (non-negative integers), got 'seven'")]
    [InlineData("""{"prompt":"x","logit_bias":{"99999":1}}""", "logit_bias", "logit_bias names token 99999, outside the vocabulary [0, 512)")]
    [InlineData("""{"prompt":"x","logit_bias":[1]}""", "logit_bias", "logit_bias must be an object from token ids to biases")]
    [InlineData("""{"prompt":"x","max_tokens":4,"min_tokens":5}""", "min_tokens", "min_tokens is 5 but max_tokens is 4")]
    [InlineData("""{"prompt":"x","stop_token_ids":[3,700]}""", "stop_token_ids", "stop_token_ids names token 700, outside the vocabulary [0, 512)")]
    [InlineData("""{"prompt":"x","stop_token_ids":5}""", "stop_token_ids", "stop_token_ids must be an array of token ids")]
    [InlineData("""{"prompt":"x","ignore_eos":"yes"}""", "ignore_eos", "ignore_eos must be")]
    public async Task Bad_completion_requests_get_400_naming_the_field(string body, string param, string message)
    {
        AssertError(HttpStatusCode.BadRequest, await cluster.PostAsync("/v1/completions", body), param, message);
    }

    [Fact]
    public async Task A_prompt_longer_than_the_context_is_refused_before_it_runs()
    {
        string prompt = string.Join(',', Enumerable.Repeat("403", 600));
        AssertError(HttpStatusCode.BadRequest, await cluster.PostAsync("/v1/completions", $$"""{"prompt":[{{prompt}}]}"""), "prompt",
            "the prompt is 600 tokens, but this model's context is 512 tokens");
    }

    [Fact]
    public async Task An_oversized_body_gets_413_an_unknown_path_or_model_404_both_as_JSON()
    {
        // Kestrel answers as soon as it sees the length and closes the connection without reading the body, so a
        // client that insists on sending all 5 MiB first only sees a broken pipe: announce the size, send a little.
        using (var tcp = new System.Net.Sockets.TcpClient())
        {
            await tcp.ConnectAsync("127.0.0.1", cluster.BaseUrl.Port);
            var stream = tcp.GetStream();
            string head = $"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {HttpCluster.ApiKey}\r\nContent-Type: application/json\r\nContent-Length: {5 << 20}\r\n\r\n{{\"prompt\":\"aaaa";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            using var reader = new StreamReader(stream);
            Assert.StartsWith("HTTP/1.1 413 ", await reader.ReadLineAsync(deadline.Token));
            string rest = await reader.ReadToEndAsync(deadline.Token); // the server closes the connection
            Assert.Contains("""{"error":{"message":"the request body is larger than 4194304 bytes","type":"invalid_request_error","param":null,"code":"request_too_large"}}""", rest);
        }

        using var missing = await cluster.Http.GetAsync("/v1/engines");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("no such endpoint: GET /v1/engines", JsonDocument.Parse(await missing.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("message").GetString());

        AssertError(HttpStatusCode.NotFound, await cluster.PostAsync(Chat, $$"""{"model":"gpt-4o","messages":{{User}}}"""), "model", "the model 'gpt-4o' does not exist; this server serves 'stories260K'");
    }

    [Fact]
    public async Task The_API_key_is_required_everywhere_but_health()
    {
        using var anonymous = cluster.NewClient(withKey: false);
        AssertError(HttpStatusCode.Unauthorized, await cluster.PostAsync(Chat, $$"""{"messages":{{User}}}""", anonymous), null, "missing or wrong API key");
        using (var models = await anonymous.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
        using (var wrong = cluster.NewClient(withKey: false))
        {
            wrong.DefaultRequestHeaders.Authorization = new("Bearer", "not-the-key");
            using var metrics = await wrong.GetAsync("/metrics");
            Assert.Equal(HttpStatusCode.Unauthorized, metrics.StatusCode);
        }
        using var health = await anonymous.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task Health_says_ready_with_every_rank()
    {
        using var response = await cluster.Http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("""{"status":"ready","world_size":2,"ranks_ready":2}""", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Tokenize_and_detokenize_round_trip_as_vllm_has_them()
    {
        var (status, json) = await cluster.PostAsync("/tokenize", """{"prompt":"Once upon a time"}""");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal([1, 403, 407, 261, 378], json.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(5, json.GetProperty("count").GetInt32());
        Assert.Equal(512, json.GetProperty("max_model_len").GetInt32());

        // Messages go through the chat template (the plain one for this model: contents joined by newlines).
        (status, json) = await cluster.PostAsync("/tokenize", """{"messages":[{"role":"system","content":"Once upon"},{"role":"user","content":"a time"}]}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var chatIds = json.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        (_, var plain) = await cluster.PostAsync("/tokenize", """{"prompt":"Once upon\na time"}""");
        Assert.Equal(plain.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()), chatIds);

        (status, json) = await cluster.PostAsync("/detokenize", """{"tokens":[1,403,407,261,378]}""");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("Once upon a time", json.GetProperty("prompt").GetString());

        AssertError(HttpStatusCode.BadRequest, await cluster.PostAsync("/detokenize", """{"tokens":[1,-4]}"""), "tokens[1]", "tokens[1] must be a token id in [0, 512), got -4");
    }

    [Fact]
    public async Task A_streamed_chat_is_well_framed_SSE_with_the_role_first_usage_last_and_DONE_at_the_end()
    {
        using var response = await cluster.Http.PostAsync(Chat, HttpCluster.Body($$"""
            {"messages":{{User}},"temperature":0,"max_tokens":24,"stream":true,"stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":2}
            """));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = HttpCluster.SseEvents(await response.Content.ReadAsStringAsync());

        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList(); // every chunk parses
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        var first = chunks[0].GetProperty("choices")[0].GetProperty("delta");
        Assert.Equal("assistant", first.GetProperty("role").GetString());
        var text = new StringBuilder();
        int logprobTokens = 0;
        foreach (var c in chunks.Skip(1).Where(c => c.GetProperty("choices").GetArrayLength() > 0))
        {
            var choice = c.GetProperty("choices")[0];
            Assert.False(choice.GetProperty("delta").TryGetProperty("role", out _));
            if (choice.GetProperty("delta").TryGetProperty("content", out var piece)) text.Append(piece.GetString());
            if (choice.GetProperty("logprobs").ValueKind == JsonValueKind.Object)
            {
                foreach (var lp in choice.GetProperty("logprobs").GetProperty("content").EnumerateArray())
                {
                    logprobTokens++;
                    Assert.True(lp.GetProperty("logprob").GetSingle() <= 0);
                    var top = lp.GetProperty("top_logprobs");
                    Assert.Equal(2, top.GetArrayLength());
                    // Greedy: the sampled token is the most likely one.
                    Assert.Equal(top[0].GetProperty("token").GetString(), lp.GetProperty("token").GetString());
                }
            }
        }
        Assert.Equal(cluster.ReferenceText, text.ToString());
        Assert.Equal(24, logprobTokens);
        var finish = chunks[^2].GetProperty("choices")[0];
        Assert.Equal("length", finish.GetProperty("finish_reason").GetString());
        var usage = chunks[^1];
        Assert.Equal(0, usage.GetProperty("choices").GetArrayLength());
        Assert.Equal(29, usage.GetProperty("usage").GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task A_streamed_legacy_completion_ends_with_DONE_and_matches_generate()
    {
        using var response = await cluster.Http.PostAsync("/v1/completions", HttpCluster.Body("""
            {"prompt":[1,403,407,261,378],"temperature":0,"max_tokens":24,"stream":true}
            """));
        var events = HttpCluster.SseEvents(await response.Content.ReadAsStringAsync());
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.Equal(cluster.ReferenceText, string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString())));
        Assert.Equal("length", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.All(chunks, c => Assert.False(c.TryGetProperty("usage", out _))); // include_usage was not asked
    }

    [Fact]
    public async Task N_choices_are_each_a_full_completion_greedy_alike_seeded_distinct_and_streamed_by_index()
    {
        const string Prompt = "[1,403,407,261,378]"; // greedy gives cluster.ReferenceText
        // Greedy: every choice is the reference text; the prompt is counted once in the usage.
        var (status, greedy) = await cluster.PostAsync("/v1/completions", $$"""{"prompt":{{Prompt}},"temperature":0,"max_tokens":24,"n":3}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var choices = greedy.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal([0, 1, 2], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.All(choices, c => Assert.Equal(cluster.ReferenceText, c.GetProperty("text").GetString()));
        Assert.Equal((5, 72, 77), (greedy.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(),
            greedy.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), greedy.GetProperty("usage").GetProperty("total_tokens").GetInt32()));

        // Seeded: choice i samples with seed + i, so choice 1 is the single answer for seed 8, and the two differ.
        async Task<string[]> Sampled(int seed, int n)
        {
            var (s, json) = await cluster.PostAsync("/v1/completions",
                $$"""{"prompt":{{Prompt}},"temperature":1,"max_tokens":24,"seed":{{seed}},"n":{{n}}}""");
            Assert.Equal(HttpStatusCode.OK, s);
            return [.. json.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()!)];
        }
        var pair = await Sampled(7, 2);
        Assert.Equal([(await Sampled(7, 1))[0], (await Sampled(8, 1))[0]], pair);
        Assert.NotEqual(pair[0], pair[1]);

        // The later choices start once the first has its first token, so they take its full blocks from the prefix
        // cache instead of all prefilling the prompt in the same step: 40 tokens, two full blocks each.
        string fresh = "[1," + string.Join(',', Enumerable.Range(300, 39)) + "]"; // in no other test's prompt
        var before = await PrefixCacheCountsAsync();
        var (shared, _) = await cluster.PostAsync("/v1/completions", $$"""{"prompt":{{fresh}},"temperature":0,"max_tokens":2,"n":3}""");
        var after = await PrefixCacheCountsAsync();
        Assert.Equal(HttpStatusCode.OK, shared);
        Assert.Equal((120, 64), (after.Queries - before.Queries, after.Hits - before.Hits));

        // Streamed chat: each choice opens with its role chunk and ends with its own finish reason; the pieces of
        // each index add up to that choice's whole text.
        using var response = await cluster.Http.PostAsync(Chat, HttpCluster.Body($$$"""
            {"messages":{{{User}}},"temperature":0,"max_tokens":12,"n":2,"stream":true,"stream_options":{"include_usage":true}}
            """));
        var events = HttpCluster.SseEvents(await response.Content.ReadAsStringAsync());
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        var perChoice = chunks.Where(c => c.GetProperty("choices").GetArrayLength() == 1).Select(c => c.GetProperty("choices")[0])
            .GroupBy(c => c.GetProperty("index").GetInt32()).OrderBy(g => g.Key).ToList();
        Assert.Equal([0, 1], perChoice.Select(g => g.Key));
        var (_, whole) = await cluster.PostAsync(Chat, $$"""{"messages":{{User}},"temperature":0,"max_tokens":12}""");
        string expected = whole.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        foreach (var g in perChoice)
        {
            Assert.Equal("assistant", g.First().GetProperty("delta").GetProperty("role").GetString());
            Assert.Equal(expected, string.Concat(g.Select(c => c.GetProperty("delta").TryGetProperty("content", out var t) ? t.GetString() : "")));
            Assert.Equal("length", g.Last().GetProperty("finish_reason").GetString());
        }
        Assert.Equal(24, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task A_completion_is_stamped_with_its_own_time_not_the_servers_start()
    {
        // The model card's created is the server's start; a completion must carry the second it was made in.
        var models = JsonDocument.Parse(await cluster.Http.GetStringAsync("/v1/models")).RootElement;
        long started = models.GetProperty("data")[0].GetProperty("created").GetInt64();
        while (DateTimeOffset.UtcNow.ToUnixTimeSeconds() <= started) await Task.Delay(100); // at most a second
        long before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var (status, chat) = await cluster.PostAsync(Chat, $$"""{"messages":{{User}},"temperature":0,"max_tokens":2}""");
        var (_, text) = await cluster.PostAsync("/v1/completions", """{"prompt":"Once","temperature":0,"max_tokens":2}""");
        long after = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.InRange(chat.GetProperty("created").GetInt64(), before, after);
        Assert.InRange(text.GetProperty("created").GetInt64(), before, after);
    }

    [Fact]
    public async Task Logit_bias_bans_or_forces_tokens_as_OpenAI_defines_it()
    {
        const string Prompt = "[1,403,407,261,378]"; // the reference's prompt, so greedy gives cluster.ReferenceIds
        async Task<string> Completion(string bias, int maxTokens = 6)
        {
            var (status, json) = await cluster.PostAsync("/v1/completions",
                $$"""{"prompt":{{Prompt}},"temperature":0,"max_tokens":{{maxTokens}},"logit_bias":{{bias}}}""");
            Assert.Equal(HttpStatusCode.OK, status);
            return json.GetProperty("choices")[0].GetProperty("text").GetString()!;
        }
        async Task<string> Text(IEnumerable<int> ids) =>
            (await cluster.PostAsync("/detokenize", JsonSerializer.Serialize(new { tokens = ids }))).Json.GetProperty("prompt").GetString()!;

        // +100 forces a token at every step: " time" six times.
        Assert.Equal(await Text(Enumerable.Repeat(378, 6)), await Completion("""{"378":100}"""));
        // -100 bans the reference's first token (","), so the answer starts otherwise.
        int first = cluster.ReferenceIds[0];
        string banned = await Completion($$"""{"{{first}}":-100}""");
        Assert.False(banned.StartsWith(await Text([first]), StringComparison.Ordinal), banned);
        // An empty bias is no bias: the reference text, unchanged.
        Assert.Equal(cluster.ReferenceText, await Completion("{}", maxTokens: 24));
    }

    [Fact]
    public async Task Stop_token_ids_ignore_eos_and_min_tokens_behave_as_in_vllm()
    {
        const string Prompt = "[1,403,407,261,378]"; // greedy gives cluster.ReferenceIds
        async Task<(string Finish, int Tokens, string Text)> Completion(string fields)
        {
            var (status, json) = await cluster.PostAsync("/v1/completions", $$"""{"prompt":{{Prompt}},"temperature":0,{{fields}}}""");
            Assert.True(status == HttpStatusCode.OK, $"{fields}: {status} {json}");
            var choice = json.GetProperty("choices")[0];
            return (choice.GetProperty("finish_reason").GetString()!, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32(),
                choice.GetProperty("text").GetString()!);
        }
        var reference = cluster.ReferenceIds;

        // stop_token_ids: the 4th reference token ends the completion as EOS would, and is not in the text.
        int fourth = reference[3];
        int firstAt = Array.IndexOf(reference, fourth);
        var stopped = await Completion($$""" "max_tokens":24,"stop_token_ids":[{{fourth}}] """);
        Assert.Equal(("stop", firstAt + 1), (stopped.Finish, stopped.Tokens));
        var (_, detok) = await cluster.PostAsync("/detokenize", JsonSerializer.Serialize(new { tokens = reference.Take(firstAt) }));
        Assert.Equal(detok.GetProperty("prompt").GetString(), stopped.Text);

        // min_tokens: the first token is a stop id, so without it the completion is one token long; with it the stop
        // id cannot come before 3 tokens, so the completion is longer and does not start the reference's way.
        int first = reference[0];
        var early = await Completion($$""" "max_tokens":24,"stop_token_ids":[{{first}}] """);
        Assert.Equal(("stop", 1, ""), early);
        var held = await Completion($$""" "max_tokens":24,"stop_token_ids":[{{first}}],"min_tokens":3 """);
        Assert.True(held.Tokens >= 4, $"min_tokens 3 gave {held.Tokens} tokens ({held.Finish}): '{held.Text}'");

        // min_tokens with a stop string: the first token's text ends the completion at once, unless min_tokens holds the
        // stop back; then that text stays in the answer, which goes on as the reference does.
        var (_, firstJson) = await cluster.PostAsync("/detokenize", JsonSerializer.Serialize(new { tokens = new[] { first } }));
        string firstText = firstJson.GetProperty("prompt").GetString()!;
        string stopField = JsonSerializer.Serialize(firstText);
        Assert.Equal(("stop", 1, ""), await Completion($$""" "max_tokens":24,"stop":{{stopField}} """));
        var textHeld = await Completion($$""" "max_tokens":24,"stop":{{stopField}},"min_tokens":3 """);
        Assert.True(textHeld.Tokens >= 3 && textHeld.Text.StartsWith(firstText, StringComparison.Ordinal)
            && cluster.ReferenceText.StartsWith(textHeld.Text, StringComparison.Ordinal),
            $"min_tokens 3 with stop {stopField} gave {textHeld.Tokens} tokens ({textHeld.Finish}): '{textHeld.Text}'");

        // ignore_eos: logit_bias forces EOS (id 2) every step; EOS ends it at once unless ignored.
        var eos = await Completion(""" "max_tokens":5,"logit_bias":{"2":100} """);
        Assert.Equal(("stop", 1), (eos.Finish, eos.Tokens));
        var ignored = await Completion(""" "max_tokens":5,"logit_bias":{"2":100},"ignore_eos":true """);
        Assert.Equal(("length", 5), (ignored.Finish, ignored.Tokens));
    }

    [Fact]
    public async Task JSON_modes_hold_the_answer_and_text_or_no_tools_change_nothing()
    {
        async Task<(string Finish, string Content)> Ask(string fields)
        {
            var (status, json) = await cluster.PostAsync(Chat, $$"""{"messages":{{User}},"max_tokens":400,{{fields}}}""");
            Assert.True(status == HttpStatusCode.OK, $"{fields}: {status} {json}");
            var choice = json.GetProperty("choices")[0];
            return (choice.GetProperty("finish_reason").GetString()!, choice.GetProperty("message").GetProperty("content").GetString()!);
        }
        static void AssertObjectOrPrefix((string Finish, string Content) answer, string what)
        {
            var prefix = Model.Sampling.JsonSchema.AnyObject.Start();
            Assert.True(prefix.TryRead(Encoding.UTF8.GetBytes(answer.Content)), $"{what}: not JSON: {answer.Content}");
            if (answer.Finish != "stop") return;
            using var doc = JsonDocument.Parse(answer.Content);
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        }

        // The story model writes prose, not JSON: greedy and seeded sampling are held to an object all the same. It
        // rarely closes one, so "}" (byte token 128) gets a bias, which the constraint overrules wherever "}" cannot go.
        var greedy = await Ask(""" "temperature":0,"response_format":{"type":"json_object"} """);
        Assert.StartsWith("{", greedy.Content.TrimStart());
        AssertObjectOrPrefix(greedy, "greedy");
        for (int seed = 1; seed <= 3; seed++) AssertObjectOrPrefix(await Ask($$""" "temperature":1,"seed":{{seed}},"response_format":{"type":"json_object"} """), $"seed {seed}");

        var empty = await Ask(""" "temperature":0,"logit_bias":{"128":100},"response_format":{"type":"json_object"} """);
        Assert.Equal(("stop", "{}"), (empty.Finish, empty.Content.Trim()));
        var closed = await Ask(""" "temperature":1,"seed":2,"logit_bias":{"128":10},"response_format":{"type":"json_object"} """);
        Assert.Equal("stop", closed.Finish);
        AssertObjectOrPrefix(closed, "closed");
        using (var doc = JsonDocument.Parse(closed.Content)) Assert.NotEmpty(doc.RootElement.EnumerateObject());

        // json_schema: keys only from the properties, each once, every required one before the object closes; the enum,
        // the integer and the boolean as declared. Greedy closes it (this model, this prompt), and seeded answers that
        // end parse to the schema too.
        const string Schema = """
            {"type":"object","properties":{"mood":{"enum":["happy","sad"]},"age":{"type":"integer"},"done":{"type":"boolean"},
             "name":{"type":"string"}},"required":["mood","age","done","name"],"additionalProperties":false}
            """;
        string format = $$$""" "response_format":{"type":"json_schema","json_schema":{"name":"story","strict":true,"schema":{{{Schema}}}}} """;
        int followed = 0;
        foreach (string sampling in new[] { """ "temperature":0 """, """ "temperature":1,"seed":2 """, """ "temperature":1,"seed":3 """ })
        {
            var answer = await Ask(sampling + "," + format);
            if (answer.Finish != "stop") continue;
            using var doc = JsonDocument.Parse(answer.Content);
            var root = doc.RootElement;
            Assert.Equal(new[] { "age", "done", "mood", "name" }, root.EnumerateObject().Select(p => p.Name).Order()); // each once
            Assert.Contains(root.GetProperty("mood").GetString(), new[] { "happy", "sad" });
            Assert.True(root.GetProperty("age").TryGetInt64(out _), answer.Content);
            Assert.True(root.GetProperty("done").ValueKind is JsonValueKind.True or JsonValueKind.False, answer.Content);
            Assert.Equal(JsonValueKind.String, root.GetProperty("name").ValueKind);
            followed++;
        }
        Assert.True(followed >= 2, $"only {followed} of 3 answers closed their object");

        // What clients send by default about tools when they have none changes nothing.
        Assert.Equal(await Ask(""" "temperature":0 """), await Ask(""" "temperature":0,"tools":[],"tool_choice":"none","parallel_tool_calls":false """));
        // Template variables the bundled model's plain template has no use for change nothing either.
        Assert.Equal(await Ask(""" "temperature":0 """), await Ask(""" "temperature":0,"chat_template_kwargs":{"enable_thinking":false} """));

        // "text" is the default format: the same answer as no response_format at all.
        Assert.Equal(await Ask(""" "temperature":0 """), await Ask(""" "temperature":0,"response_format":{"type":"text"} """));
    }

    [Fact]
    public async Task Echo_repeats_the_prompt_and_best_of_returns_the_choices_most_likely_per_token()
    {
        async Task<JsonElement> Completion(string fields)
        {
            var (status, json) = await cluster.PostAsync("/v1/completions", "{" + fields + "}");
            Assert.True(status == HttpStatusCode.OK, $"{fields}: {status} {json}");
            return json;
        }
        static string Text(JsonElement json, int i = 0) => json.GetProperty("choices")[i].GetProperty("text").GetString()!;

        // echo: the prompt as given (text), or as its ids decode, then the completion; streamed, the prompt comes first.
        string plain = Text(await Completion(""" "prompt":"Once upon a time","temperature":0,"max_tokens":8 """));
        Assert.Equal("Once upon a time" + plain, Text(await Completion(""" "prompt":"Once upon a time","temperature":0,"max_tokens":8,"echo":true """)));
        Assert.Equal("Once upon a time" + cluster.ReferenceText,
            Text(await Completion(""" "prompt":[1,403,407,261,378],"temperature":0,"max_tokens":24,"echo":true """)));
        using var stream = await cluster.Http.PostAsync("/v1/completions", new StringContent(
            """{"prompt":"Once upon a time","temperature":0,"max_tokens":8,"echo":true,"stream":true}""", Encoding.UTF8, "application/json"));
        var pieces = (await stream.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Where(e => e != "data: [DONE]").Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement)
            .Select(chunk => chunk.GetProperty("choices")[0].GetProperty("text").GetString()).ToList();
        Assert.Equal("Once upon a time", pieces[0]);
        Assert.Equal(plain, string.Concat(pieces.Skip(1)));

        // best_of 4, n 2: the same four seeded choices as n 4 (choice i samples with seed + i), of which the two with
        // the highest mean log-probability per token come back, best first; usage counts all four. The seed is the
        // first whose two best are not simply choices 0 and 1, so that the ranking shows.
        for (int seed = 11; ; seed++)
        {
            Assert.True(seed < 40, "no seed ranked its choices out of their order");
            string sampled = $$""" "prompt":"Once upon a time","temperature":1,"seed":{{seed}},"max_tokens":12 """;
            var all = await Completion(sampled + ""","n":4,"logprobs":0""");
            var ranked = Enumerable.Range(0, 4).Select(i => (Index: i, Text: Text(all, i),
                    Mean: all.GetProperty("choices")[i].GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().Average(l => l.GetDouble())))
                .OrderByDescending(c => c.Mean).ThenBy(c => c.Index).ToList();
            if (ranked[0].Index == 0 && ranked[1].Index == 1) continue;
            var best = await Completion(sampled + ""","n":2,"best_of":4""");
            Assert.Equal(2, best.GetProperty("choices").GetArrayLength());
            Assert.Equal([ranked[0].Text, ranked[1].Text], [Text(best, 0), Text(best, 1)]);
            Assert.Equal(JsonValueKind.Null, best.GetProperty("choices")[0].GetProperty("logprobs").ValueKind); // not asked for
            Assert.Equal(all.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), best.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            break;
        }
    }

    [Fact]
    public async Task Seeded_sampling_with_every_sampling_field_is_reproducible()
    {
        const string body = """
            {"prompt":"Once upon a time","max_tokens":12,"temperature":0.9,"top_p":0.95,"top_k":40,"min_p":0.02,"seed":7,
             "presence_penalty":0.5,"frequency_penalty":0.3,"repetition_penalty":1.1,"user":"ignored"}
            """;
        var (s1, one) = await cluster.PostAsync("/v1/completions", body);
        var (s2, two) = await cluster.PostAsync("/v1/completions", body);
        Assert.Equal(HttpStatusCode.OK, s1);
        Assert.Equal(HttpStatusCode.OK, s2);
        string a = one.GetProperty("choices")[0].GetProperty("text").GetString()!;
        Assert.Equal(a, two.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.NotEqual(cluster.ReferenceText[..Math.Min(a.Length, cluster.ReferenceText.Length)], a); // really sampled
    }

    [Fact]
    public async Task Metrics_are_Prometheus_text_with_the_serving_series()
    {
        await cluster.PostAsync("/v1/completions", """{"prompt":"Once","max_tokens":3,"temperature":0}""");
        using var response = await cluster.Http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string text = await response.Content.ReadAsStringAsync();
        foreach (var series in (string[])[
            "actorring_requests_total{outcome=\"length\"}", "actorring_prompt_tokens_total", "actorring_generation_tokens_total",
            "actorring_time_to_first_token_seconds_bucket", "actorring_time_per_output_token_seconds_bucket",
            "actorring_decode_step_seconds_bucket{part=\"compute\"", "actorring_decode_step_seconds_bucket{part=\"control\"",
            "actorring_requests_running", "actorring_requests_waiting", "actorring_ranks_ready 2", "actorring_world_size 2",
            "actorring_kv_cache_blocks_used", "actorring_kv_cache_blocks_total", "actorring_kv_cache_usage_ratio",
            "actorring_steps_total", "actorring_step_seconds_total{part=\"all_reduce\"}"])
        {
            Assert.Contains(series, text);
        }
        var generated = text.Split('\n').Single(l => l.StartsWith("actorring_generation_tokens_total ", StringComparison.Ordinal));
        Assert.True(double.Parse(generated.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) >= 3);
    }

    /// <summary>
    /// The engine's series move with a request: while it streams, it runs and holds KV blocks; once it ends, the
    /// blocks are free again, and one step per generated token was added, its time split into compute, all-reduce,
    /// gather and control (two ranks: the all-reduces and the gather take time), and one time-per-output-token sample.
    /// </summary>
    [Fact]
    public async Task Metrics_follow_a_request_through_the_engine()
    {
        const int tokens = 300;
        var before = await ScrapeAsync();
        Assert.Equal(2, before["actorring_ranks_ready"]);
        Assert.True(before["actorring_kv_cache_blocks_total"] > 0);

        using var client = cluster.NewClient(withKey: true);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = HttpCluster.Body($$"""{"prompt":"Once upon a time","max_tokens":{{tokens}},"temperature":0,"stream":true}"""),
        };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var body = response.Content.ReadAsStringAsync();
        Dictionary<string, double>? during = null;
        while (!body.IsCompleted)
        {
            var now = await ScrapeAsync();
            if (now["actorring_requests_running"] == 1 && now["actorring_kv_cache_blocks_used"] > 0) during = now;
            if (during is not null) break;
        }
        Assert.NotNull(during); // the request's 300 tokens take far longer than a scrape
        Assert.InRange(during["actorring_kv_cache_usage_ratio"], 1e-9, 1);
        Assert.Equal(during["actorring_kv_cache_blocks_used"] / during["actorring_kv_cache_blocks_total"], during["actorring_kv_cache_usage_ratio"], 6);
        Assert.EndsWith("data: [DONE]", (await body).TrimEnd());

        var after = await ScrapeAsync();
        for (var wait = Stopwatch.StartNew(); after["actorring_kv_cache_blocks_used"] > 0 && wait.Elapsed < TimeSpan.FromSeconds(10); await Task.Delay(50))
            after = await ScrapeAsync();
        Assert.Equal(0, after["actorring_kv_cache_blocks_used"]);
        Assert.Equal(0, after["actorring_requests_running"]);
        double Delta(string series) => after[series] - before[series];
        // Its first token comes from the prefill step, every other one from a decode step.
        Assert.InRange(Delta("actorring_steps_total"), tokens, tokens + 5);
        Assert.Equal(tokens, Delta("actorring_generation_tokens_total"));
        Assert.Equal(1, Delta("actorring_time_per_output_token_seconds_count"));
        foreach (var part in (string[])["compute", "all_reduce", "gather", "control"])
            Assert.True(Delta($"actorring_step_seconds_total{{part=\"{part}\"}}") > 0, $"no {part} time in {tokens} steps");
    }

    /// <summary>/metrics as series name (labels included) to value.</summary>
    private async Task<Dictionary<string, double>> ScrapeAsync()
    {
        using var metrics = await cluster.Http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        return (await metrics.Content.ReadAsStringAsync()).Split('\n')
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => (Series: l[..l.LastIndexOf(' ')], Value: l[(l.LastIndexOf(' ') + 1)..]))
            .ToDictionary(x => x.Series, x => double.Parse(x.Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task A_repeated_long_prompt_skips_its_cached_blocks_and_answers_exactly_as_the_first_time()
    {
        // 40 ids: two full 16-position KV blocks and 8 tokens more, none of which another test sends.
        var ids = Enumerable.Range(0, 40).Select(i => i == 0 ? 1 : 3 + i * 37 % 500).ToArray();
        string body = JsonSerializer.Serialize(new { prompt = ids, max_tokens = 8, temperature = 0, logprobs = 2 });
        var before = await PrefixCacheCountsAsync();
        var (s1, first) = await cluster.PostAsync("/v1/completions", body);
        var (s2, second) = await cluster.PostAsync("/v1/completions", body);
        var after = await PrefixCacheCountsAsync();
        Assert.Equal(HttpStatusCode.OK, s1);
        Assert.Equal(HttpStatusCode.OK, s2);
        // Text, tokens and every logprob (two ranks' logits, gathered) are the same with the prefix cached.
        Assert.Equal(first.GetProperty("choices")[0].GetRawText(), second.GetProperty("choices")[0].GetRawText());
        Assert.Equal(80, after.Queries - before.Queries);
        Assert.Equal(32, after.Hits - before.Hits); // the second request's two full blocks; the last 8 are prefilled
    }

    private async Task<(double Queries, double Hits)> PrefixCacheCountsAsync()
    {
        using var metrics = await cluster.Http.GetAsync("/metrics");
        var lines = (await metrics.Content.ReadAsStringAsync()).Split('\n');
        double Value(string series) => double.Parse(lines.Single(l => l.StartsWith(series + " ", StringComparison.Ordinal)).Split(' ')[1],
            System.Globalization.CultureInfo.InvariantCulture);
        return (Value("actorring_prefix_cache_queries_total"), Value("actorring_prefix_cache_hits_total"));
    }

    /// <summary>Prompts for the concurrency test: each continues differently.</summary>
    private static readonly string[] Prompts =
    [
        "Once upon a time", "The dog", "Lily saw a", "Tom had a big", "One day, the sun", "The little bird",
        "Mom said", "A girl named Sue", "The cat was", "They went to the park",
    ];

    private async Task<string> StreamedTextAsync(HttpClient client, string prompt, int maxTokens)
    {
        using var response = await client.PostAsync("/v1/completions", HttpCluster.Body(JsonSerializer.Serialize(new
        {
            prompt, max_tokens = maxTokens, temperature = 0, stream = true,
        })));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = HttpCluster.SseEvents(await response.Content.ReadAsStringAsync());
        Assert.Equal("[DONE]", events[^1]);
        return string.Concat(events[..^1].Select(e => JsonDocument.Parse(e).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()));
    }

    [Fact]
    public async Task Ten_concurrent_streams_each_get_the_text_they_get_alone()
    {
        const int maxTokens = 6;
        var alone = new List<string>();
        foreach (var prompt in Prompts) alone.Add(await StreamedTextAsync(cluster.Http, prompt, maxTokens));
        Assert.True(alone.Distinct().Count() >= 8, "the prompts should continue differently: " + string.Join(" | ", alone));

        var together = await Task.WhenAll(Prompts.Select(p => StreamedTextAsync(cluster.Http, p, maxTokens)));
        Assert.Equal(alone, together);
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_stream_frees_the_cluster_for_the_next_request_at_once()
    {
        var before = await OutcomeCountsAsync();
        var clock = Stopwatch.StartNew();
        using (var client = cluster.NewClient(withKey: true))
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = HttpCluster.Body("""{"prompt":"Once upon a time","max_tokens":500,"temperature":0,"stream":true}"""),
        })
        {
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            using var stream = await response.Content.ReadAsStreamAsync();
            using var reader = new StreamReader(stream);
            string? line = await reader.ReadLineAsync();
            Assert.StartsWith("data: ", line); // it is streaming; now the client goes away
        }
        var (status, json) = await cluster.PostAsync("/v1/completions", """{"prompt":"Once upon a time","max_tokens":4,"temperature":0}""");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(", there was a", json.GetProperty("choices")[0].GetProperty("text").GetString());
        double ms = clock.Elapsed.TotalMilliseconds;
        Assert.True(ms < 20_000, $"the next request waited {ms:0} ms: the abandoned one held the cluster");

        // The abandoned request must end: cancelled, or (the batched loop runs this small model at about a
        // millisecond a token) finished before the disconnect reached the server. Either way it is counted.
        var after = before;
        for (var wait = Stopwatch.StartNew(); wait.Elapsed < TimeSpan.FromSeconds(10); await Task.Delay(100))
        {
            after = await OutcomeCountsAsync();
            if (after.Cancelled > before.Cancelled || after.Length >= before.Length + 2) break;
        }
        Assert.True(after.Cancelled > before.Cancelled || after.Length >= before.Length + 2,
            $"the abandoned request never ended: cancelled {before.Cancelled} -> {after.Cancelled}, length {before.Length} -> {after.Length}");
    }

    private async Task<(double Cancelled, double Length)> OutcomeCountsAsync()
    {
        using var metrics = await cluster.Http.GetAsync("/metrics");
        var lines = (await metrics.Content.ReadAsStringAsync()).Split('\n');
        double Count(string outcome) => double.Parse(lines.Single(l => l.StartsWith($"actorring_requests_total{{outcome=\"{outcome}\"}}", StringComparison.Ordinal)).Split(' ')[1],
            System.Globalization.CultureInfo.InvariantCulture);
        return (Count("cancelled"), Count("length"));
    }
}
