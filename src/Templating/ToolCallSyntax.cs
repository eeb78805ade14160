using System.Text;
using System.Text.Json;

namespace ActorRing.Templating;

/// <summary>A call of a function: its id (OpenAI's <c>tool_calls[].id</c>), its name and its arguments as JSON text.</summary>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>What an answer holds once its tool calls are read out: the text around them (null when there is none) and the calls.</summary>
public sealed record ToolCallAnswer(string? Content, IReadOnlyList<ToolCall> Calls);

/// <summary>
/// How a model family writes tool calls in its answers, which its chat template teaches it (the template renders
/// the tools and the earlier calls in that form). Three are read, the ones vLLM's parsers of the same names read:
/// <list type="bullet">
/// <item><b>hermes</b> (Qwen2.5, Qwen3, Hermes): <c>&lt;tool_call&gt;{"name": …, "arguments": {…}}&lt;/tool_call&gt;</c>
/// blocks after any text;</item>
/// <item><b>llama3_json</b> (Llama 3.1–3.3): the whole answer is <c>{"name": …, "parameters": {…}}</c>, optionally
/// after <c>&lt;|python_tag|&gt;</c>, several separated by ';';</item>
/// <item><b>mistral</b>: <c>[TOOL_CALLS]</c> then a JSON list of <c>{"name", "arguments"}</c> (the marker is a
/// control token, which decoding usually drops, so a list at the start of the answer counts too).</item>
/// </list>
/// A text that does not read as calls is returned whole as content, as vLLM does: a model that meant to call and
/// wrote malformed JSON gets its text back, not a call with broken arguments.
/// </summary>
public abstract class ToolCallSyntax
{
    /// <summary>vLLM's name for the parser (its <c>--tool-call-parser</c>).</summary>
    public abstract string Name { get; }

    /// <summary>
    /// Where in a streamed answer's text not yet sent the part that is or may become a call begins: text before it is
    /// content and can be sent; text from it on is held until the answer ends (a marker's first characters are
    /// held too, since the next token may complete it). <paramref name="atStart"/>: nothing of the answer was sent
    /// yet (a form whose calls are the whole answer cannot begin one later).
    /// </summary>
    public abstract int HoldFrom(string text, bool atStart = true);

    /// <summary>Reads the calls out of a whole answer, each with a fresh id.</summary>
    public ToolCallAnswer Parse(string text)
    {
        try
        {
            var found = Calls(text, out string? content);
            if (found is { Count: > 0 })
                return new ToolCallAnswer(string.IsNullOrWhiteSpace(content) ? null : content.Trim(), [.. found.Select(c => c with { Id = NewId() })]);
        }
        catch (JsonException)
        {
            // Not JSON where a call should be: the answer stays text.
        }
        catch (InvalidOperationException)
        {
            // JSON of the wrong shape (a name that is not a string, ...): likewise.
        }
        return new ToolCallAnswer(text, []);
    }

    /// <summary>The calls in <paramref name="text"/> (ids left empty), or null when it holds none; a call that does not
    /// parse throws <see cref="JsonException"/> or <see cref="InvalidOperationException"/>.</summary>
    protected abstract List<ToolCall>? Calls(string text, out string? content);

    /// <summary>A new call id in a form the template takes back in the next request's history.</summary>
    public virtual string NewId() => OpenAiId();

    /// <summary>OpenAI's form of a call id: "call_" and 24 letters and digits.</summary>
    public static string OpenAiId() => "call_" + RandomAlphanumeric(24);

    protected static string RandomAlphanumeric(int length)
    {
        const string Alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        return string.Create(length, 0, (span, _) =>
        {
            for (int i = 0; i < span.Length; i++) span[i] = Alphabet[System.Security.Cryptography.RandomNumberGenerator.GetInt32(Alphabet.Length)];
        });
    }

    /// <summary>The syntax a template teaches, found by what it writes around calls; null when it teaches none of these
    /// (no tools at all, or a form this server does not read).</summary>
    public static ToolCallSyntax? For(string templateSource)
    {
        if (templateSource.Contains("<tool_call>", StringComparison.Ordinal)) return Hermes;
        if (templateSource.Contains("[TOOL_CALLS]", StringComparison.Ordinal)) return Mistral;
        if (templateSource.Contains("<|python_tag|>", StringComparison.Ordinal)
            || templateSource.Contains("\"parameters\": dictionary", StringComparison.Ordinal)) return LlamaJson;
        return null;
    }

    public static readonly ToolCallSyntax Hermes = new HermesSyntax();
    public static readonly ToolCallSyntax LlamaJson = new LlamaJsonSyntax();
    public static readonly ToolCallSyntax Mistral = new MistralSyntax();

    /// <summary>
    /// The index where <paramref name="marker"/> starts in <paramref name="text"/>, or where a suffix of the text that
    /// could still grow into it starts, or the text's length.
    /// </summary>
    protected static int MarkerHold(string text, string marker)
    {
        int at = text.IndexOf(marker, StringComparison.Ordinal);
        if (at >= 0) return at;
        for (int keep = Math.Min(marker.Length - 1, text.Length); keep > 0; keep--)
        {
            if (text.AsSpan(text.Length - keep).SequenceEqual(marker.AsSpan(0, keep))) return text.Length - keep;
        }
        return text.Length;
    }

    /// <summary>For answers that are calls from their first character on: everything is held while only whitespace has
    /// come, and from the start once the first other character may begin a call.</summary>
    protected static int LeadingHold(string text, Func<string, bool> mayBeCall)
    {
        string trimmed = text.TrimStart();
        if (trimmed.Length == 0) return 0;
        return mayBeCall(trimmed) ? 0 : text.Length;
    }

    /// <summary>One call object: its "name" and its arguments under <paramref name="argumentsKeys"/> (an object, or a
    /// string holding one, as some models write it), as compact JSON text.</summary>
    protected static ToolCall CallFrom(JsonElement call, params string[] argumentsKeys)
    {
        if (call.ValueKind != JsonValueKind.Object) throw new InvalidOperationException("a call is not an object");
        if (!call.TryGetProperty("name", out var nameValue) || nameValue.ValueKind != JsonValueKind.String) throw new InvalidOperationException("a call has no name");
        string name = nameValue.GetString()!;
        if (name.Length == 0) throw new InvalidOperationException("a call's name is empty");
        JsonElement? arguments = null;
        foreach (var key in argumentsKeys)
        {
            if (call.TryGetProperty(key, out var a)) { arguments = a; break; }
        }
        string text = arguments switch
        {
            null => "{}",
            { ValueKind: JsonValueKind.String } s => CompactArguments(JsonDocument.Parse(s.GetString()!).RootElement),
            { ValueKind: JsonValueKind.Object } o => CompactArguments(o),
            _ => throw new InvalidOperationException("a call's arguments are not an object"),
        };
        return new ToolCall("", name, text);
    }

    /// <summary>A call's arguments object as compact JSON text, as OpenAI sends them.</summary>
    public static string CompactArguments(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new InvalidOperationException("a call's arguments are not an object");
        return JsonSerializer.Serialize(e, CompactJson);
    }

    private static readonly JsonSerializerOptions CompactJson = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Consecutive JSON values in <paramref name="text"/>, separated by whitespace or <paramref name="separator"/>.</summary>
    protected static List<JsonElement> Values(string text, char? separator = null)
    {
        var values = new List<JsonElement>();
        var bytes = Encoding.UTF8.GetBytes(text);
        int at = 0;
        while (true)
        {
            while (at < bytes.Length && (bytes[at] is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' || (separator is char s && bytes[at] == s)))
                at++;
            if (at == bytes.Length) return values;
            var reader = new Utf8JsonReader(bytes.AsSpan(at), new JsonReaderOptions { AllowMultipleValues = true });
            using var document = JsonDocument.ParseValue(ref reader);
            values.Add(document.RootElement.Clone());
            at += (int)reader.BytesConsumed;
        }
    }

    private sealed class HermesSyntax : ToolCallSyntax
    {
        private const string Open = "<tool_call>", Close = "</tool_call>";

        public override string Name => "hermes";

        public override int HoldFrom(string text, bool atStart = true) => MarkerHold(text, Open);

        protected override List<ToolCall>? Calls(string text, out string? content)
        {
            int first = text.IndexOf(Open, StringComparison.Ordinal);
            content = first < 0 ? text : text[..first];
            if (first < 0) return null;
            var calls = new List<ToolCall>();
            for (int at = first; at >= 0; at = text.IndexOf(Open, at, StringComparison.Ordinal))
            {
                int body = at + Open.Length, end = text.IndexOf(Close, body, StringComparison.Ordinal);
                // The last block may be unclosed: the model ended its turn right after the JSON.
                string json = end < 0 ? text[body..] : text[body..end];
                calls.Add(CallFrom(JsonDocument.Parse(json).RootElement, "arguments", "parameters"));
                if (end < 0) break;
                at = end + Close.Length;
            }
            return calls;
        }
    }

    private sealed class LlamaJsonSyntax : ToolCallSyntax
    {
        private const string PythonTag = "<|python_tag|>";

        public override string Name => "llama3_json";

        public override int HoldFrom(string text, bool atStart = true) =>
            !atStart ? text.Length : LeadingHold(text, t => t[0] == '{' || PythonTag.StartsWith(t[..Math.Min(t.Length, PythonTag.Length)], StringComparison.Ordinal));

        protected override List<ToolCall>? Calls(string text, out string? content)
        {
            content = null;
            string body = text.TrimStart();
            if (body.StartsWith(PythonTag, StringComparison.Ordinal)) body = body[PythonTag.Length..];
            if (!body.TrimStart().StartsWith('{'))
            {
                content = text;
                return null;
            }
            return [.. Values(body, ';').Select(v => CallFrom(v, "parameters", "arguments"))];
        }
    }

    private sealed class MistralSyntax : ToolCallSyntax
    {
        private const string Marker = "[TOOL_CALLS]";

        public override string Name => "mistral";

        /// <summary>Mistral's templates refuse ids that are not 9 letters and digits.</summary>
        public override string NewId() => RandomAlphanumeric(9);

        public override int HoldFrom(string text, bool atStart = true)
        {
            int marker = MarkerHold(text, Marker);
            int leading = atStart ? LeadingHold(text, t => t[0] == '[') : text.Length;
            return Math.Min(marker, leading);
        }

        protected override List<ToolCall>? Calls(string text, out string? content)
        {
            int at = text.IndexOf(Marker, StringComparison.Ordinal);
            string body;
            if (at >= 0)
            {
                content = text[..at];
                body = text[(at + Marker.Length)..];
            }
            else
            {
                content = null;
                body = text.TrimStart();
                if (!body.StartsWith('['))
                {
                    content = text;
                    return null;
                }
            }
            var calls = new List<ToolCall>();
            foreach (var list in Values(body))
            {
                if (list.ValueKind != JsonValueKind.Array) throw new InvalidOperationException("mistral's calls are not a list");
                calls.AddRange(list.EnumerateArray().Select(c => CallFrom(c, "arguments", "parameters")));
            }
            return calls;
        }
    }
}
