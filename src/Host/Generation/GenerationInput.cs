using ActorRing.Model.Sampling;

namespace ActorRing.Host.Generation;

/// <summary>One completion request as the service runs it: token ids (already templated and encoded) and how to
/// sample them. <see cref="SamplingOptions.MaxTokens"/> null-free: callers resolve the default against the
/// context with <see cref="GenerationService.ResolveMaxTokens"/>.</summary>
/// <param name="WaitForCluster">While a rank is missing, wait for it (up to the service's idle timeout) instead of
/// failing at once: what a terminal user wants, where an HTTP client wants a 503 it can retry.</param>
public sealed record GenerationInput(IReadOnlyList<int> PromptIds, SamplingOptions Sampling, bool WaitForCluster = false);

/// <summary>Input that the service refuses before running anything; <see cref="Param"/> names the field as the
/// HTTP API spells it (null when no single field is at fault).</summary>
public sealed class GenerationRequestException(string message, string? param) : Exception(message)
{
    public string? Param { get; } = param;
}
