using System.Text;
using System.Text.Json;
using ActorRing.Model.Sampling;

namespace ActorRing.Model.Tests;

/// <summary>OpenAI's JSON modes: the recognizers of JSON object prefixes (any object, or one that follows a schema),
/// and the sampler held to them.</summary>
public sealed class JsonConstraintTests
{
    private static bool Reads(string text, out JsonSchemaPrefix prefix)
    {
        prefix = JsonSchema.AnyObject.Start();
        return prefix.TryRead(Encoding.UTF8.GetBytes(text));
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("\n{ }")]
    [InlineData("{\n  \"pretty\": {\n\t\t\"printed\": [\n      1,\n      2\n    ]\n  }\n}")]
    [InlineData("{\"a\":1}")]
    [InlineData("{\"a\": -0.5e+10, \"b\": [1, 2.25, -3E2, 0], \"c\": {\"d\": null}}")]
    [InlineData("{\"s\": \"q\\\"uote \\\\ \\/ \\b\\f\\n\\r\\t \\u00e9\\uABCD\"}")]
    [InlineData("{\"t\": true, \"f\": false, \"n\": null, \"e\": [], \"o\": {}}")]
    [InlineData("{\"ünïcode ключ\": \"値\"}")]
    [InlineData("{\"nested\": [[[{\"x\": [ ]}]]]}")]
    public void Whole_objects_are_complete_and_each_of_their_prefixes_reads_without_being_complete(string json)
    {
        JsonDocument.Parse(json).Dispose(); // the cases are valid JSON, by System.Text.Json's reading too
        var bytes = Encoding.UTF8.GetBytes(json);
        for (int cut = 0; cut < bytes.Length; cut++)
        {
            var prefix = JsonSchema.AnyObject.Start();
            Assert.True(prefix.TryRead(bytes.AsSpan(0, cut)), $"prefix of {cut} bytes of {json}");
            Assert.False(prefix.IsComplete, $"prefix of {cut} bytes of {json} is not whole");
        }
        Assert.True(Reads(json, out var whole));
        Assert.True(whole.IsComplete);
    }

    [Theory]
    [InlineData("[1]")]                  // the top-level value must be an object
    [InlineData("\"text\"")]
    [InlineData("x")]
    [InlineData("{,")]
    [InlineData("{\"a\" 1")]             // no colon
    [InlineData("{\"a\":1,}")]           // trailing comma
    [InlineData("{\"a\":[1,]")]
    [InlineData("{\"a\":01")]            // leading zero
    [InlineData("{\"a\":-}")]
    [InlineData("{\"a\":1.}")]
    [InlineData("{\"a\":1e}")]
    [InlineData("{\"a\":tru}")]
    [InlineData("{\"a\":nul ")]
    [InlineData("{\"a\":\"\\x\"}")]      // not an escape
    [InlineData("{\"a\":\"\\u12G4\"}")]
    [InlineData("{\"a\":\"\\u12!4\"}")]  // '!' below 'a' once passed for a hex digit
    [InlineData("{\"a\":\"\\u@000\"}")]
    [InlineData("{\"a\":\"line\nbreak\"}")] // control characters must be escaped
    [InlineData("{\"a\":1]")]            // the wrong bracket
    [InlineData("{\"a\":[1}")]
    [InlineData("{} ")]                  // nothing after the object, not even whitespace: EOS must come
    [InlineData("{}{}")]
    [InlineData("{1:2}")]                // keys are strings
    public void Bytes_that_cannot_continue_a_JSON_object_are_refused(string text)
    {
        Assert.False(Reads(text, out _));
    }

    [Fact]
    public void A_token_may_end_inside_a_literal_a_number_an_escape_or_a_character()
    {
        var prefix = JsonSchema.AnyObject.Start();
        foreach (var piece in new[] { "{\"a\":tr", "ue,\"b\":-1", "2.5", "e", "-3", ",\"c\":\"\\", "u00", "e9 ", "\"}" })
        {
            Assert.True(prefix.TryRead(Encoding.UTF8.GetBytes(piece)), piece);
        }
        Assert.True(prefix.IsComplete);

        // A UTF-8 character split between two byte tokens (é = C3 A9) is string content either way.
        var split = JsonSchema.AnyObject.Start();
        Assert.True(split.TryRead("{\"k\":\""u8));
        Assert.True(split.TryRead([0xC3]));
        Assert.True(split.TryRead([0xA9]));
        Assert.True(split.TryRead("\"}"u8));
        Assert.True(split.IsComplete);
    }

    [Fact]
    public void Nesting_and_whitespace_between_tokens_are_limited()
    {
        // The object and its arrays are frames, and so is the innermost value being written.
        Assert.True(Reads("{\"a\":" + new string('[', JsonSchemaPrefix.MaxDepth - 2) + "1", out _));
        Assert.False(Reads("{\"a\":" + new string('[', JsonSchemaPrefix.MaxDepth - 1) + "1", out _));
        Assert.False(Reads("{\"a\":" + new string('[', JsonSchemaPrefix.MaxDepth), out _));
        // Between tokens: nothing, one space, or a line break and up to MaxIndent spaces or tabs.
        Assert.True(Reads("{\n" + new string(' ', JsonSchemaPrefix.MaxIndent) + "\"a\" :\n\t1 }", out _));
        Assert.False(Reads("{\n" + new string(' ', JsonSchemaPrefix.MaxIndent + 1), out _));
        Assert.False(Reads("{  ", out _));
        Assert.False(Reads("{\n\n", out _));
        Assert.False(Reads("{ \n", out _));
        Assert.False(Reads("{\t", out _));
        // Whitespace inside a string is text.
        Assert.True(Reads("{\"a\":\"" + new string(' ', 3 * JsonSchemaPrefix.MaxIndent) + "\"}", out var text));
        Assert.True(text.IsComplete);
    }

    // A toy vocabulary: id 0 is EOS (special), the rest are texts.
    private static readonly string[] Vocabulary = ["", "{", "}", "\"", "a", "\":", " 1", "hello", "[", "]", ",", " ", "}\n", "{\"", "x\": \"y\"}", "\n\n", ":"];
    private const int Eos = 0;

    private static readonly VocabularyBytes ToyBytes = new([.. Vocabulary.Select((t, id) => id == Eos ? null : Encoding.UTF8.GetBytes(t))]);

    private static JsonConstraint Constraint() => new(ToyBytes, JsonSchema.AnyObject, [Eos], "response_format json_object");

    private static string Text(IEnumerable<int> ids) => string.Concat(ids.Select(id => Vocabulary[id]));

    [Fact]
    public void Greedy_picks_the_best_allowed_token_and_ends_with_EOS_right_after_the_object()
    {
        // Per step, the tokens the model likes best, best first; all others score 0. The first one or two break
        // the object each time (EOS before it is whole, a bracket where a value goes, whitespace after it).
        string[][] script =
        [
            ["hello", "}", "{\""],  // "hello" cannot open an object
            ["", "a"],                // EOS before the object is whole
            ["", "\":"],
            ["}", "hello", " 1"],    // a value must follow the colon
            ["\":", "}\n", "}"],    // nothing, not even a newline, may follow the object
            ["\n\n", ""],
        ];
        var json = Constraint();
        var sampler = new Sampler(SamplingOptions.Greedy, json);
        var picked = new List<int>();
        foreach (var liked in script)
        {
            var logits = new float[Vocabulary.Length];
            for (int rank = 0; rank < liked.Length; rank++) logits[Array.IndexOf(Vocabulary, liked[rank])] = 10 - rank;
            int id = sampler.Sample(logits, picked);
            Assert.Equal(liked[^1], Vocabulary[id]);
            json.Accept(id);
            picked.Add(id);
        }
        Assert.Equal("{\"a\": 1}", Text(picked));
        Assert.Equal(Eos, picked[^1]);
        Assert.True(json.IsComplete);
    }

    [Fact]
    public void Seeded_sampling_draws_only_allowed_tokens_and_its_objects_parse()
    {
        int whole = 0;
        for (ulong seed = 1; seed <= 40; seed++)
        {
            var rng = new DeterministicRng(seed);
            var json = Constraint();
            var sampler = new Sampler(new SamplingOptions(Temperature: 1, Seed: seed, TopK: 6), json);
            var picked = new List<int>();
            while (picked.Count < 200 && (picked.Count == 0 || picked[^1] != Eos))
            {
                var logits = Enumerable.Range(0, Vocabulary.Length).Select(_ => (float)(rng.NextDouble() * 6)).ToArray();
                int id = sampler.Sample(logits, picked);
                json.Accept(id);
                picked.Add(id);
            }
            string text = Text(picked);
            var prefix = JsonSchema.AnyObject.Start();
            Assert.True(prefix.TryRead(Encoding.UTF8.GetBytes(text)), $"seed {seed}: {text}");
            if (picked[^1] == Eos)
            {
                using var doc = JsonDocument.Parse(text);
                Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
                whole++;
            }
        }
        Assert.True(whole >= 10, $"only {whole} of 40 draws closed their object within 200 tokens");
    }

    [Fact]
    public void Accepting_a_token_that_breaks_the_object_is_an_error_and_a_dead_end_fails_the_pick_by_name()
    {
        var json = Constraint();
        var error = Assert.Throws<InvalidOperationException>(() => json.Accept(Array.IndexOf(Vocabulary, "hello")));
        Assert.Contains("does not continue the JSON answer (response_format json_object)", error.Message);

        // Every token but "hello" has no chance: nothing may open the object.
        var onlyHello = Enumerable.Range(0, Vocabulary.Length).Select(id => Vocabulary[id] == "hello" ? 0f : float.NegativeInfinity).ToArray();
        var sampler = new Sampler(new SamplingOptions(Temperature: 1, Seed: 3), Constraint());
        var dead = Assert.Throws<InvalidOperationException>(() => sampler.Sample(onlyHello, []));
        Assert.Contains("response format allows none", dead.Message);
    }

    [Fact]
    public void JSON_mode_refuses_ignore_eos_and_min_tokens_by_name()
    {
        Assert.Contains(new SamplingOptions(JsonObject: true, IgnoreEos: true).GetErrors(), e => e.Contains("ignore_eos"));
        Assert.Contains(new SamplingOptions(JsonObject: true, MinTokens: 3).GetErrors(), e => e.Contains("min_tokens (3)"));
        Assert.Empty(new SamplingOptions(JsonObject: true).GetErrors());
        Assert.Contains(new SamplingOptions(JsonSchema: PersonSchema, IgnoreEos: true).GetErrors(), e => e.StartsWith("response_format json_schema ends"));
        Assert.Contains(new SamplingOptions(JsonSchema: """{"type":"object","properties":{"a":{"type":"string","pattern":"x"}}}""").GetErrors(),
            e => e == "response_format json_schema: the keyword \"pattern\" at #/properties/a is not supported: this server would not enforce it");
        Assert.Empty(new SamplingOptions(JsonSchema: PersonSchema).GetErrors());
    }

    // ---------------------------------------------------------------- json_schema

    private const string PersonSchema = """
        {"type":"object","title":"Person","properties":{
            "name":{"type":"string","description":"any text"},
            "age":{"type":"integer"},
            "height":{"type":"number"},
            "pet":{"enum":["cat","caterpillar","dog"]},
            "tags":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":2},
            "nickname":{"anyOf":[{"type":"string"},{"type":"null"}]},
            "alive":{"type":"boolean"},
            "home":{"$ref":"#/$defs/Place"}},
         "required":["name","age","pet"],"additionalProperties":false,
         "$defs":{"Place":{"type":"object","properties":{"city":{"const":"Oslo"},"inner":{"$ref":"#/$defs/Place"}},"required":["city"]}}}
        """;

    private static JsonSchema PersonSchemaCompiled()
    {
        using var doc = JsonDocument.Parse(PersonSchema);
        return JsonSchema.Compile(doc.RootElement);
    }

    private static JsonSchemaPrefix Person() => PersonSchemaCompiled().Start();

    private static bool ReadsPerson(string text, out JsonSchemaPrefix prefix)
    {
        prefix = Person();
        return prefix.TryRead(Encoding.UTF8.GetBytes(text));
    }

    [Theory]
    [InlineData("{\"name\":\"Tim\",\"age\":7,\"pet\":\"cat\"}")]
    [InlineData("{\"pet\": \"caterpillar\", \"age\": -12, \"name\": \"\\u00e9 \\\"q\\\"\"}")]   // any order, escapes in free text
    [InlineData("{\"name\":\"\",\"age\":0,\"pet\":\"dog\",\"height\":1.5e3,\"tags\":[\"a\",\"b\"],\"nickname\":null,\"alive\":false}")]
    [InlineData("{\n  \"name\": \"x\",\n  \"age\": 1,\n  \"pet\": \"cat\",\n  \"nickname\": \"Timmy\",\n  \"home\": {\"city\": \"Oslo\", \"inner\": {\"city\": \"Oslo\"}}\n}")]
    public void Answers_that_follow_the_schema_are_complete_and_their_prefixes_are_not(string json)
    {
        JsonDocument.Parse(json).Dispose();
        var bytes = Encoding.UTF8.GetBytes(json);
        for (int cut = 0; cut < bytes.Length; cut++)
        {
            var prefix = Person();
            Assert.True(prefix.TryRead(bytes.AsSpan(0, cut)), $"prefix of {cut} bytes of {json}");
            Assert.False(prefix.IsComplete);
        }
        Assert.True(ReadsPerson(json, out var whole));
        Assert.True(whole.IsComplete);
    }

    [Theory]
    [InlineData("{\"name\":\"Tim\",\"age\":7}")]                          // pet is required
    [InlineData("{\"name\":\"Tim\",\"age\":7,\"pet\":\"cat\",\"color\"")] // not a property
    [InlineData("{\"name\":\"Tim\",\"name\"")]                             // a property only once
    [InlineData("{\"age\":7.5")]                                               // an integer
    [InlineData("{\"age\":7e2")]
    [InlineData("{\"age\":\"7\"")]
    [InlineData("{\"pet\":\"caterpillars")]                                  // not among the enum values
    [InlineData("{\"pet\":\"ca\"")]
    [InlineData("{\"tags\":[]")]                                               // minItems 1
    [InlineData("{\"tags\":[\"a\",\"b\",")]                                 // maxItems 2
    [InlineData("{\"nickname\":7")]                                            // a string or null
    [InlineData("{\"alive\":nul")]
    [InlineData("{\"home\":{\"city\":\"Bergen\"")]                          // const
    [InlineData("{\"home\":{}")]                                               // city is required in a Place
    [InlineData("[")]                                                          // the root is an object
    [InlineData("{  ")]                                                        // whitespace as in JSON mode
    public void Answers_that_break_the_schema_are_refused_where_they_break(string text)
    {
        Assert.False(ReadsPerson(text, out _));
    }

    [Theory]
    [InlineData("""{"type":"array","items":{"type":"string"}}""", "the schema's root must be an object")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","format":"uri"}}}""", "the format \"uri\" at #/properties/a is not supported: this server enforces date, time, date-time, uuid and email")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer","format":"date"}}}""", "format at #/properties/a applies to strings, not integer values")]
    [InlineData("""{"type":"object","properties":{"a":{"enum":["x"],"format":"date"}}}""", "format at #/properties/a cannot be combined with enum or const")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer","multipleOf":3}}}""", "the keyword \"multipleOf\" at #/properties/a")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","minimum":3}}}""", "minimum at #/properties/a applies to numbers, not string values")]
    [InlineData("""{"type":"object","properties":{"a":{"type":["integer","null"],"maxLength":3}}}""", "maxLength at #/properties/a applies to strings, not integer or null values")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"number","exclusiveMinimum":true}}}""", "exclusiveMinimum at #/properties/a must be a number, got true (the boolean form of draft 4")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer","minimum":1.5,"maximum":1.9}}}""", "the bounds at #/properties/a leave no integer")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","minLength":3,"maxLength":2}}}""", "minLength (3) exceeds maxLength (2) at #/properties/a")]
    [InlineData("""{"properties":{"a":{"type":"string"}}}""", "the schema at # has no type")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","pattern":"^a"}}}""", "the keyword \"pattern\" at #/properties/a is not supported")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":true}""", "additionalProperties at # must be false or absent beside properties")]
    [InlineData("""{"type":"object","required":["a"]}""", "required at # needs properties")]
    [InlineData("""{"type":"object","properties":{"a":{"anyOf":[{"type":"integer"},{"type":"number"}]}}}""", "two branches can start with the same kind of value (a number)")]
    [InlineData("""{"type":"object","properties":{"a":{"enum":["x",1]}}}""", "enum and const values at #/properties/a must be strings, got number 1")]
    [InlineData("""{"type":"object","properties":{"a":{"$ref":"#/$defs/Missing"}}}""", "$ref \"#/$defs/Missing\" at #/properties/a must name an entry")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string"}},"required":["b"]}""", "required at # names \"b\", which is not in properties")]
    [InlineData("""{"type":"object","properties":{"a\"b":{"type":"string"}}}""", "holds a quote, a backslash or a control character")]
    public void Schemas_with_what_the_recognizer_would_not_enforce_are_refused_by_name(string schema, string message)
    {
        using var doc = JsonDocument.Parse(schema);
        var error = Assert.Throws<JsonSchemaException>(() => JsonSchema.Compile(doc.RootElement));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void Maps_and_values_of_any_kind_take_what_their_schemas_leave_open()
    {
        using var doc = JsonDocument.Parse("""
            {"type":"object","properties":{
                "counts":{"type":"object","additionalProperties":{"type":"integer"}},
                "extra":{"description":"anything"},
                "list":{"type":"array"},
                "empty":{"type":"object","properties":{},"additionalProperties":false}},
             "required":["counts"]}
            """);
        var schema = JsonSchema.Compile(doc.RootElement);
        bool Reads(string text, out JsonSchemaPrefix prefix)
        {
            prefix = schema.Start();
            return prefix.TryRead(Encoding.UTF8.GetBytes(text));
        }

        Assert.True(Reads("""{"counts":{"x":1,"x":-2,"\u00e9":0},"extra":[{"a":null},"b",true],"list":[1,"two",[]],"empty":{}}""", out var whole));
        Assert.True(whole.IsComplete);
        Assert.False(Reads("""{"counts":{"x":"1""", out _));   // a map of integers
        Assert.False(Reads("""{"counts":{"x":1.5""", out _));
        Assert.False(Reads("""{"counts":{},"empty":{"a""", out _)); // no properties, none allowed
        Assert.False(Reads("""{"extra":1}""", out _));          // counts is required
    }

    /// <summary>
    /// Seeded draws under a schema, over a byte-level vocabulary (every printable byte its own token, so any answer can
    /// be spelled) and <paramref name="longer"/> pieces, with random logits in which <paramref name="favoured"/> tokens
    /// (and EOS) get +3, so strings and answers end now and then. Every answer reads as a prefix of the schema's; the
    /// ones that ended with EOS within <paramref name="maxTokens"/> come back as text.
    /// </summary>
    private static List<string> SampledAnswers(string schemaText, string[] longer, string[] favoured, ulong seedFactor, int maxTokens)
    {
        var texts = new List<string?> { null };
        texts.AddRange(Enumerable.Range(0x20, 0x5F).Select(b => ((char)b).ToString()));
        texts.AddRange(longer);
        var vocabulary = new VocabularyBytes([.. texts.Select(t => t is null ? null : Encoding.UTF8.GetBytes(t))]);
        using var doc = JsonDocument.Parse(schemaText);
        var schema = JsonSchema.Compile(doc.RootElement);
        int[] boosted = [Eos, .. favoured.Select(t => texts.IndexOf(t))];
        var closed = new List<string>();
        for (ulong seed = 1; seed <= 30; seed++)
        {
            var rng = new DeterministicRng(seed * seedFactor);
            var json = new JsonConstraint(vocabulary, schema, [Eos], "response_format json_schema");
            var sampler = new Sampler(new SamplingOptions(Temperature: 1, Seed: seed), json);
            var picked = new List<int>();
            while (picked.Count < maxTokens && (picked.Count == 0 || picked[^1] != Eos))
            {
                var logits = Enumerable.Range(0, texts.Count).Select(_ => (float)(rng.NextDouble() * 4)).ToArray();
                foreach (int id in boosted) logits[id] += 3;
                int pick = sampler.Sample(logits, picked);
                json.Accept(pick);
                picked.Add(pick);
            }
            string text = string.Concat(picked.Select(id => texts[id]));
            Assert.True(schema.Start().TryRead(Encoding.UTF8.GetBytes(text)), $"seed {seed}: {text}");
            if (picked[^1] == Eos) closed.Add(text);
        }
        Assert.True(closed.Count >= 5, $"only {closed.Count} of 30 answers closed within {maxTokens} tokens");
        return closed;
    }

    [Fact]
    public void Seeded_sampling_under_a_schema_gives_answers_that_parse_and_follow_it()
    {
        foreach (string text in SampledAnswers(PersonSchema, ["{\"", "\":", "\",\"", "name", "age", "pet", "cat", "dog", "true", "null", " ", "\n  "], ["\""], 7919, 300))
        {
            using var doc = JsonDocument.Parse(text);
            var root = doc.RootElement;
            Assert.Equal(JsonValueKind.String, root.GetProperty("name").ValueKind);
            Assert.True(root.GetProperty("age").TryGetInt64(out _), text);
            Assert.Contains(root.GetProperty("pet").GetString(), new[] { "cat", "caterpillar", "dog" });
            Assert.All(root.EnumerateObject(), p => Assert.Contains(p.Name, new[] { "name", "age", "height", "pet", "tags", "nickname", "alive", "home" }));
        }
    }

    // A discriminated union: the shape a forced tool call takes (several functions, told apart by "name"), as the root,
    // as array items and (through a $ref) as a property's value.
    private const string Calls = """
        {"type":"object","properties":{
            "call":{"anyOf":[{"$ref":"#/$defs/Weather"},{"$ref":"#/$defs/Time"},{"type":"null"}]},
            "list":{"type":"array","items":{"anyOf":[{"$ref":"#/$defs/Weather"},{"$ref":"#/$defs/Time"}]}}},
         "required":["call"],
         "$defs":{
            "Weather":{"type":"object","properties":{"name":{"const":"get_weather"},"arguments":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},
                       "required":["name","arguments"],"additionalProperties":false},
            "Time":{"type":"object","properties":{"arguments":{"type":"object","properties":{"utc":{"type":"boolean"}},"required":["utc"]},"name":{"enum":["get_time","now"]}},
                    "required":["name","arguments"],"additionalProperties":false}}}
        """;

    private static JsonSchemaPrefix Start(string schema)
    {
        using var doc = JsonDocument.Parse(schema);
        return JsonSchema.Compile(doc.RootElement).Start();
    }

    private const string RootUnion = """
        {"anyOf":[{"type":"object","properties":{"name":{"const":"a"},"x":{"type":"integer"}},"required":["name","x"]},
                  {"type":"object","properties":{"name":{"const":"b"},"y":{"type":"boolean"}},"required":["name"]}]}
        """;

    [Theory]
    [InlineData(Calls, """{"call":{"name":"get_weather","arguments":{"city":"Oslo"}}}""")]
    [InlineData(Calls, """{"call": {"name": "now", "arguments": {"utc": true}}, "list": [{"name":"get_time","arguments":{"utc":false}},{"name":"get_weather","arguments":{"city":""}}]}""")]
    [InlineData(Calls, """{"call":null,"list":[]}""")]
    [InlineData(RootUnion, """{"name":"a","x":1}""")]
    [InlineData(RootUnion, """{"name":"b"}""")]
    [InlineData(RootUnion, """{"name":"b","y":false}""")]
    public void A_union_told_apart_by_its_first_property_reads_each_branch_whole_and_no_prefix_is_complete(string schema, string json)
    {
        AssertReadsWholeAndNoPrefixIsComplete(schema, json);
    }

    /// <summary>The answer parses, reads whole under the schema, and none of its prefixes is complete.</summary>
    private static void AssertReadsWholeAndNoPrefixIsComplete(string schema, string json)
    {
        JsonDocument.Parse(json).Dispose();
        var bytes = Encoding.UTF8.GetBytes(json);
        for (int cut = 0; cut < bytes.Length; cut++)
        {
            var prefix = Start(schema);
            Assert.True(prefix.TryRead(bytes.AsSpan(0, cut)), $"prefix of {cut} bytes of {json}");
            Assert.False(prefix.IsComplete);
        }
        var whole = Start(schema);
        Assert.True(whole.TryRead(bytes));
        Assert.True(whole.IsComplete);
    }

    [Theory]
    [InlineData(Calls, """{"call":{"arguments""")]                                   // the discriminator comes first
    [InlineData(Calls, """{"call":{}""")]                                             // and is required
    [InlineData(Calls, """{"call":{"name":"get_wind""")]                             // a value of no branch
    [InlineData(Calls, """{"call":{"name":"get_weather","arguments":{"utc""")]      // the other branch's arguments
    [InlineData(Calls, """{"call":{"name":"now","arguments":{"utc":1""")]
    [InlineData(Calls, """{"call":{"name":"get_weather"}""")]                        // arguments is required there
    [InlineData(Calls, """{"call":{"name":"get_weather","name""")]                   // a key only once
    [InlineData(Calls, """{"call":{"name":"get_weather","arguments":{"city":"x"},"x""")] // no other keys
    [InlineData(RootUnion, """{"name":"a","y""")]
    [InlineData(RootUnion, """{"name":"a"}""")]                                         // x is required in branch a
    public void A_union_refuses_what_its_chosen_branch_refuses(string schema, string text)
    {
        Assert.False(Start(schema).TryRead(Encoding.UTF8.GetBytes(text)));
    }

    [Theory]
    [InlineData("""{"anyOf":[{"type":"object","properties":{"k":{"const":"a"}},"required":["k"]},{"type":"object","properties":{"k":{"enum":["b","a"]}},"required":["k"]}]}""",
        "#/anyOf: the value \"a\" of \"k\" is in two branches")]
    [InlineData("""{"anyOf":[{"type":"object","properties":{"k":{"const":"a"}},"required":["k"]},{"type":"object","properties":{"k":{"const":"b"}}}]}""",
        "#/anyOf: 2 branches are objects, which this server tells apart only by a property every one of them requires")]
    [InlineData("""{"anyOf":[{"type":"object","properties":{"k":{"type":"string"}},"required":["k"]},{"type":"object","properties":{"k":{"const":"b"}},"required":["k"]}]}""",
        "these share none")]
    public void Unions_that_cannot_be_told_apart_are_refused_by_name(string schema, string message)
    {
        using var doc = JsonDocument.Parse(schema);
        Assert.Contains(message, Assert.Throws<JsonSchemaException>(() => JsonSchema.Compile(doc.RootElement)).Message);
    }

    [Fact]
    public void A_union_of_more_values_than_a_mask_holds_is_refused()
    {
        string Branch(int i) => $$$"""{"type":"object","properties":{"k":{"const":"v{{{i}}}"}},"required":["k"]}""";
        using var doc = JsonDocument.Parse($$"""{"anyOf":[{{string.Join(",", Enumerable.Range(0, 65).Select(Branch))}}]}""");
        Assert.Contains("are 65; at most 64 are supported", Assert.Throws<JsonSchemaException>(() => JsonSchema.Compile(doc.RootElement)).Message);
    }

    [Fact]
    public void Seeded_sampling_under_a_union_gives_calls_that_follow_the_branch_they_name()
    {
        var names = new HashSet<string>();
        foreach (string text in SampledAnswers(Calls, ["{\"", "\":", "\",\"", "name", "arguments", "get_weather", "get_time", "now", "city", "utc", "true", "null", " "],
            ["\"", "}"], 104729, 300))
        {
            using var answer = JsonDocument.Parse(text);
            var call = answer.RootElement.GetProperty("call");
            if (call.ValueKind == JsonValueKind.Null) continue;
            string name = call.GetProperty("name").GetString()!;
            names.Add(name);
            var arguments = call.GetProperty("arguments");
            if (name == "get_weather") Assert.Equal(JsonValueKind.String, arguments.GetProperty("city").ValueKind);
            else Assert.True(arguments.GetProperty("utc").ValueKind is JsonValueKind.True or JsonValueKind.False, text);
            Assert.Equal(["arguments", "name"], call.EnumerateObject().Select(p => p.Name).Order());
        }
        Assert.True(names.Count >= 2, $"the draws named only {string.Join(", ", names)}");
    }

    private const string Bounded = """
        {"type":"object","properties":{
            "n":{"type":"integer","minimum":-5,"maximum":120},
            "x":{"type":"number","exclusiveMinimum":0,"maximum":1.5},
            "s":{"type":"string","minLength":2,"maxLength":4}},
         "required":["n","x","s"],"additionalProperties":false}
        """;

    [Theory]
    [InlineData("""{"n":-5,"x":1.5,"s":"ab"}""")]
    [InlineData("""{"n":120,"x":0.001,"s":"äöüß"}""")]       // four characters in eight bytes
    [InlineData("""{"n":0,"x":1,"s":"a\"b"}""")]            // an escape is one character
    [InlineData("""{"n":-0,"x":1.25,"s":"\u00e9\u00e9"}""")]
    public void Bounded_numbers_and_strings_read_within_their_bounds_and_no_prefix_is_complete(string json)
    {
        AssertReadsWholeAndNoPrefixIsComplete(Bounded, json);
    }

    [Theory]
    [InlineData("""{"n":121""")]   // "12" can still become 120, "121" cannot
    [InlineData("""{"n":1200""")]
    [InlineData("""{"n":-6""")]
    [InlineData("""{"n":-50""")]
    [InlineData("""{"n":1.""")]    // an integer
    [InlineData("""{"x":0,""")]     // exclusive: 0 itself is out
    [InlineData("""{"x":-""")]
    [InlineData("""{"x":1.6""")]
    [InlineData("""{"x":2""")]
    [InlineData("""{"x":1e""")]     // no exponent in a bounded number
    [InlineData("""{"s":"a",""")]  // shorter than minLength
    [InlineData("""{"s":"abcde""")]
    [InlineData("""{"s":"abc\n\t""")]
    public void Values_out_of_their_bounds_are_refused_at_the_first_byte_that_leaves_them(string text)
    {
        Assert.False(Start(Bounded).TryRead(Encoding.UTF8.GetBytes(text)));
    }

    [Fact]
    public void Seeded_sampling_under_bounds_gives_values_within_them()
    {
        foreach (string text in SampledAnswers(Bounded, ["{\"", "\":", "\",\"", ",\"", "n", "x", "s", "12", "99", "0.", "1.", " "], ["\""], 7727, 200))
        {
            using var answer = JsonDocument.Parse(text);
            var root = answer.RootElement;
            long n = root.GetProperty("n").GetInt64();
            double x = root.GetProperty("x").GetDouble();
            int length = new System.Globalization.StringInfo(root.GetProperty("s").GetString()!).LengthInTextElements;
            Assert.True(n is >= -5 and <= 120 && x is > 0 and <= 1.5 && length is >= 2 and <= 4, text);
        }
    }

    private const string Formats = """
        {"type":"object","properties":{
            "d":{"type":"string","format":"date"},
            "t":{"type":"string","format":"time"},
            "at":{"type":"string","format":"date-time"},
            "id":{"type":"string","format":"uuid"},
            "mail":{"type":"string","format":"email"}},
         "required":["d","t","at","id"]}
        """;

    [Theory]
    [InlineData("""{"d":"2026-12-04","t":"17:45:00Z","at":"1999-01-31T23:59:59.123+01:00","id":"123e4567-e89b-12d3-a456-426614174000"}""")]
    [InlineData("""{"id":"ABCDEF00-0000-0000-0000-00000000000f","at":"2000-10-10T00:00:00z","t":"09:05:30.5-11:30","d":"0001-09-30"}""")]
    [InlineData("""{"id":"00000000-0000-0000-0000-000000000000","at":"2000-10-10T00:00:00.123456789Z","t":"23:59:59+00:00","d":"9999-12-31"}""")]
    [InlineData("""{"mail":"ada.lovelace+x@math-dept.example.co.uk","d":"2026-12-04","t":"17:45:00Z","at":"1999-01-31T23:59:59Z","id":"123e4567-e89b-12d3-a456-426614174000"}""")]
    public void Formatted_strings_read_whole_and_no_prefix_is_complete(string json)
    {
        AssertReadsWholeAndNoPrefixIsComplete(Formats, json);
    }

    [Theory]
    [InlineData("""{"d":"2026-13""")]          // month 13
    [InlineData("""{"d":"2026-00""")]
    [InlineData("""{"d":"2026-12-32""")]       // day 32
    [InlineData("""{"d":"2026-12-00""")]
    [InlineData("""{"d":"2026-12-4""")]
    [InlineData("""{"d":"2026-12-04T""")]      // a date is only a date
    [InlineData("""{"d":"26-12-04""")]
    [InlineData("""{"t":"24""")]               // hour 24
    [InlineData("""{"t":"12:60""")]
    [InlineData("""{"t":"12:30:00",""")]       // a time has a zone
    [InlineData("""{"t":"12:30:00.Z""")]       // a point needs a digit
    [InlineData("""{"t":"12:30:00+1:00""")]
    [InlineData("""{"t":"12:30:00.1234567890""")] // at most nanoseconds
    [InlineData("""{"at":"2026-12-04 12""")]   // date-time joins with T
    [InlineData("""{"id":"123e4567-e89b-12d3-a456-42661417400g""")]
    [InlineData("""{"id":"123e4567e89b""")]
    [InlineData("""{"id":"123e4567-e89b-12d3-a456-426614174000a""")]
    [InlineData("""{"id":"123e4567-e89b-12d3-a456-4266141740!0""")]  // '!' and '@' are no hex digits
    [InlineData("""{"id":"@""")]
    [InlineData("""{"mail":"@""")]                 // a local part first
    [InlineData("""{"mail":"ada@example",""")]    // a domain has a dot
    [InlineData("""{"mail":"ada@example.",""")]
    [InlineData("""{"mail":"ada@@""")]
    [InlineData("""{"mail":"ada lovelace""")]
    public void Strings_that_break_their_format_are_refused_where_they_break(string text)
    {
        Assert.False(Start(Formats).TryRead(Encoding.UTF8.GetBytes(text)));
    }

    [Fact]
    public void A_formatted_string_is_not_free_text_for_the_masks_shortcut()
    {
        var prefix = Start(Formats);
        Assert.True(prefix.TryRead("{\"d\":\"20"u8));
        Assert.False(prefix.InStringText); // plain text tokens must be read: "ab" cannot follow
        var free = JsonSchema.AnyObject.Start();
        Assert.True(free.TryRead("{\"d\":\"20"u8));
        Assert.True(free.InStringText);
    }

    [Fact]
    public void The_masks_trie_walk_allows_exactly_the_tokens_that_go_on()
    {
        // A vocabulary of JSON-ish pieces: byte-identical tokens, prefixes of one another, leading spaces, long runs.
        var rng = new DeterministicRng(42);
        const string Alphabet = "{}[]\":, \n\\\"0123456789.-eEtrufalsnabcxyzTZ<>/hik";
        var texts = new List<string?> { null, "", "\"", "\"", " ", new string(' ', 40), "{\"", "\":", "12", "123", "-0", "true", "nul",
            "<think>", "</think>", "<", "</", "think>", "k>{", "</think>\n\n", ">\n{\"" };
        while (texts.Count < 3000)
        {
            int length = 1 + (int)(rng.NextDouble() * 6);
            string token = string.Concat(Enumerable.Range(0, length).Select(_ => Alphabet[(int)(rng.NextDouble() * Alphabet.Length)]));
            texts.Add(rng.NextDouble() < 0.3 ? " " + token : token);
        }
        var vocabulary = new VocabularyBytes([.. texts.Select(t => t is null ? null : Encoding.UTF8.GetBytes(t))]);
        int checkedStates = 0;
        foreach (var (schemaText, think) in new[] { ("""{"type":"object"}""", ThinkBlock.None), (PersonSchema, ThinkBlock.None), (Calls, ThinkBlock.None),
            (Bounded, ThinkBlock.None), (Formats, ThinkBlock.None), (Calls, ThinkBlock.Open), (PersonSchema, ThinkBlock.Optional) })
        {
            using var doc = JsonDocument.Parse(schemaText);
            var schema = JsonSchema.Compile(doc.RootElement);
            for (int walk = 0; walk < 6; walk++)
            {
                var json = new JsonConstraint(vocabulary, schema, [Eos], "response_format json_schema", think);
                for (int step = 0; step < 80 && !json.IsComplete; step++)
                {
                    var scores = new float[texts.Count];
                    bool any = json.RemoveDisallowed(scores);
                    var masked = Enumerable.Range(0, texts.Count).Where(id => !float.IsNegativeInfinity(scores[id])).ToList();
                    var oneByOne = Enumerable.Range(0, texts.Count).Where(json.Allows).ToList();
                    Assert.Equal(oneByOne, masked);
                    Assert.Equal(masked.Count > 0, any);
                    checkedStates++;
                    if (masked.Count == 0) break;
                    json.Accept(masked[(int)(rng.NextDouble() * masked.Count)]);
                }
            }
        }
        Assert.True(checkedStates > 300, $"only {checkedStates} states checked");
    }

    private static readonly string[] ThinkVocabulary = ["", "<think>", "</think>", "Hmm", " {", "}", "\n\n", "{", "x", "<", "{\"a\":1}", "\n"];

    private static JsonConstraint Thinking(ThinkBlock think) =>
        new(new VocabularyBytes([.. ThinkVocabulary.Select((t, id) => id == Eos ? null : Encoding.UTF8.GetBytes(t))]), JsonSchema.AnyObject, [Eos],
            "response_format json_object", think);

    private static int T(string text) => Array.IndexOf(ThinkVocabulary, text);

    [Fact]
    public void A_reasoning_models_JSON_comes_after_its_think_block_which_holds_any_text()
    {
        // The prompt opened the block (DeepSeek-R1): anything but a stop goes until the closing tag, then the JSON.
        var open = Thinking(ThinkBlock.Open);
        foreach (var text in new[] { "Hmm", " {", "x", "<", "}", "\n" })
        {
            Assert.True(open.Allows(T(text)), text);
            open.Accept(T(text));
        }
        Assert.False(open.Allows(Eos)); // no JSON yet
        var scores = new float[ThinkVocabulary.Length];
        Assert.True(open.RemoveDisallowed(scores));
        Assert.True(float.IsNegativeInfinity(scores[Eos]));
        Assert.Equal(ThinkVocabulary.Length - 1, scores.Count(float.IsFinite));
        open.Accept(T("</think>"));
        open.Accept(T("\n\n"));   // blank lines before the JSON
        Assert.False(open.Allows(T("x")));
        Assert.False(open.Allows(T("<think>")));
        open.Accept(T("{\"a\":1}"));
        Assert.True(open.IsComplete);
        Assert.True(open.Allows(Eos));

        // The model may open one (Qwen3): the answer starts with the block or with the JSON, nothing else.
        var optional = Thinking(ThinkBlock.Optional);
        Assert.True(optional.Allows(T("<think>")));
        Assert.True(optional.Allows(T("{")));
        Assert.True(optional.Allows(T("\n")));
        Assert.False(optional.Allows(T("Hmm")));
        Assert.False(optional.Allows(T("</think>")));
        optional.Accept(T("<think>"));
        Assert.True(optional.Allows(T("Hmm")));
        optional.Accept(T("</think>"));
        optional.Accept(T(" {"));
        optional.Accept(T("}"));
        Assert.True(optional.IsComplete);

        // Without a block the JSON starts at once, as before.
        Assert.False(Thinking(ThinkBlock.None).Allows(T("<think>")));
    }
}
