namespace ActorRing.Host.Http;

/// <summary>An answer in OpenAI's error shape, <c>{"error":{"message","type","param","code"}}</c>, with its status.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null, string? type = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    /// <summary>OpenAI's error types by status.</summary>
    public string Type { get; } = type ?? status switch
    {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    public static ApiException BadRequest(string message, string? param, string code = "invalid_value") => new(400, message, param, code);

    public object Body => new ErrorBody(new ErrorDetail(Message, Type, Param, Code));

    private sealed record ErrorBody(ErrorDetail Error);

    private sealed record ErrorDetail(string Message, string Type, string? Param, string? Code);
}
