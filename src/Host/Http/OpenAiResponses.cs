using System.Text.Json.Serialization;

namespace ActorRing.Host.Http;

// OpenAI's response objects, field for field (serialized with snake_case names). Fields OpenAI sends as null
// stay null; fields it leaves out in a context are ignored when null.

internal sealed record UsageBody(int PromptTokens, int CompletionTokens, int TotalTokens);

internal sealed record ChatCompletionBody(string Id, long Created, string Model, ChatChoice[] Choices, UsageBody Usage)
{
    public string Object => "chat.completion";
    public string? SystemFingerprint => null;
}

internal sealed record ChatChoice(int Index, AssistantMessage Message, ChatLogprobs? Logprobs, string FinishReason);

/// <summary>The answer: its text (null when it only calls functions), its calls, left out when it makes none, and the
/// model's thinking (vLLM's and DeepSeek's <c>reasoning_content</c>), left out when it has none.</summary>
internal sealed record AssistantMessage(string? Content,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ToolCallBody[]? ToolCalls = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ReasoningContent = null)
{
    public string Role => "assistant";
    public string? Refusal => null;
}

internal sealed record ToolCallBody(string Id, FunctionCallBody Function)
{
    public string Type => "function";
}

/// <summary>A called function: its name and its arguments as JSON text.</summary>
internal sealed record FunctionCallBody(string Name, string Arguments);

/// <summary>A call in a streamed delta: <c>index</c> is the call's place in the answer's list. Its first delta has
/// the id, the type and the name; the ones after it only more of its arguments, as OpenAI streams them.</summary>
internal sealed record ChunkToolCall(int Index,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Id,
    ChunkFunction Function)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Type => Id is null ? null : "function";
}

internal sealed record ChunkFunction(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Name,
    string Arguments);

internal sealed record ChatChunkBody(string Id, long Created, string Model, ChunkChoice[] Choices,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] UsageBody? Usage)
{
    public string Object => "chat.completion.chunk";
    public string? SystemFingerprint => null;
}

internal sealed record ChunkChoice(int Index, ChunkDelta Delta, ChatLogprobs? Logprobs, string? FinishReason);

internal sealed record ChunkDelta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ChunkToolCall[]? ToolCalls = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ReasoningContent = null);

internal sealed record ChatLogprobs(ChatTokenLogprob[] Content)
{
    public object? Refusal => null;
}

internal sealed record ChatTokenLogprob(string Token, float Logprob, int[] Bytes, TopLogprobBody[] TopLogprobs);

internal sealed record TopLogprobBody(string Token, float Logprob, int[] Bytes);

internal sealed record TextCompletionBody(string Id, long Created, string Model, TextChoice[] Choices,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] UsageBody? Usage)
{
    public string Object => "text_completion";
    public string? SystemFingerprint => null;
}

internal sealed record TextChoice(string Text, int Index, LegacyLogprobs? Logprobs, string? FinishReason);

/// <summary>The legacy completions API's log-probabilities: parallel lists per token.</summary>
internal sealed record LegacyLogprobs(string[] Tokens, float[] TokenLogprobs, Dictionary<string, float>[] TopLogprobs, int[] TextOffset);

internal sealed record ModelList(ModelCard[] Data)
{
    public string Object => "list";
}

internal sealed record ModelCard(string Id, long Created, int MaxModelLen)
{
    public string Object => "model";
    public string OwnedBy => "actorring";
    public string Root => Id;
}

internal sealed record TokenizeBody(int Count, int MaxModelLen, int[] Tokens);

internal sealed record DetokenizeBody(string Prompt);

internal sealed record HealthBody(string Status, int WorldSize, int RanksReady,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Message);
