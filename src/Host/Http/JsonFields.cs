using System.Text.Json;

namespace ActorRing.Host.Http;

/// <summary>
/// Typed, optional fields of a JSON request object. Every getter refuses a wrong type or a value out of range with
/// a 400 that names the field, the value and what is expected; JSON null counts as absent, as in OpenAI's API.
/// </summary>
internal readonly struct JsonFields(JsonElement root)
{
    public static JsonFields Of(JsonElement root) => root.ValueKind == JsonValueKind.Object ? new JsonFields(root)
        : throw ApiException.BadRequest($"the request body must be a JSON object, got {Kind(root)}", null, "invalid_type");

    public JsonElement Root { get; } = root;

    public JsonElement? Get(string name) =>
        Root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public bool Has(string name) => Get(name) is not null;

    public string? String(string name)
    {
        if (Get(name) is not { } v) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString()
            : throw Type(name, "a string", v);
    }

    public bool? Bool(string name)
    {
        if (Get(name) is not { } v) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Type(name, "true or false", v),
        };
    }

    public double? Number(string name, double min, double max)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d)) throw Type(name, "a number", v);
        if (d < min || d > max)
            throw ApiException.BadRequest($"{name} must be between {min} and {max}, got {v.GetRawText()}", name);
        return d;
    }

    public long? Integer(string name, long min, long max)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long n)) throw Type(name, "an integer", v);
        if (n < min || n > max)
            throw ApiException.BadRequest(max is long.MaxValue or int.MaxValue
                ? $"{name} must be {(n < min ? $"at least {min}" : $"at most {max}")}, got {n}"
                : $"{name} must be between {min} and {max}, got {n}", name);
        return n;
    }

    public int? Int(string name, int min, int max) => (int?)Integer(name, min, max);

    /// <summary>A field this server does not support: refused by name rather than silently ignored.</summary>
    public void Refuse(string name, string why)
    {
        if (Has(name)) throw ApiException.BadRequest($"{name} is not supported: {why}", name, "unsupported_parameter");
    }

    public static ApiException Type(string name, string expected, JsonElement got) =>
        ApiException.BadRequest($"{name} must be {expected}, got {Kind(got)} {Shorten(got.GetRawText())}", name, "invalid_type");

    public static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    private static string Shorten(string raw) => raw.Length <= 40 ? raw : raw[..40] + "...";
}
