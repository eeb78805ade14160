using System.Globalization;
using System.Text;
using System.Text.Json;
using ActorRing.Actors;
using ActorRing.Actors.Client;
using ActorRing.Model.Sampling;
using ActorRing.Model.Tokenization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace ActorRing.Host.Serve;

/// <summary>
/// Rank 0's prompt front end. In one-shot mode (<c>--prompt</c>, used by <c>generate --world-size N</c>) it runs
/// one completion, prints it like <c>generate</c>, and shuts every rank down. In <c>--interactive</c> mode it is
/// a chat loop: on a terminal it streams tokens as they arrive; on a pipe it reads one prompt per line and
/// writes one completion per line (newlines inside a completion are written as <c>\n</c>, backslashes as
/// <c>\\</c>), so scripts can drive it. Each turn sends the whole conversation so far (requests share no
/// slot: they run concurrently in the scheduler's batch); <c>/reset</c> clears it and <c>/exit</c> quits.
/// </summary>
internal sealed class PromptService(
    ServeOptions options,
    ServeCommand.RankSetup setup,
    Func<Task<CoordinatorClient>> connect,
    IHostApplicationLifetime lifetime,
    ServeExit exit,
    ILogger<PromptService> log) : BackgroundService
{
    private readonly ITextTokenizer? _tokenizer = setup.Tokenizer; // null for a --preset (random) model
    private readonly int _context = options.Load.ContextLength
        ?? Math.Min(setup.Engines.Config.MaxPositionEmbeddings, 4096); // ModelLoadOptions' documented default
    private readonly TextWriter _out = exit.Out;
    private CoordinatorClient client = null!;
    /// <summary>The conversation's tokens so far: every prompt and every answer token but the last of each.</summary>
    private readonly List<int> _conversation = new();
    private int? _pending;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            client = await connect();
            await client.WaitReadyAsync(options.ReadyTimeout,
                s => Console.Error.WriteLine($"[cluster] {s.Detail}"), stoppingToken);
            if (options.OneShot) await OneShotAsync(stoppingToken);
            else await InteractiveAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Ctrl-C or SIGTERM: the host is already stopping.
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException or IOException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            exit.Code = 1;
        }
        finally
        {
            if (options.OneShot && client is not null) await ShutdownClusterAsync();
            lifetime.StopApplication();
        }
    }

    private async Task OneShotAsync(CancellationToken ct)
    {
        var promptIds = options.PromptIds ?? _tokenizer!.Encode(options.Prompt!, addBos: true).ToArray();
        // Text mode streams the completion as it comes, like generate; JSON prints one object at the end.
        var result = await CompleteAsync(promptIds,
            options.Json ? null : piece => { _out.Write(piece); _out.Flush(); }, ct);
        if (result.Failure is not null)
        {
            Console.Error.WriteLine($"error: {result.Failure}");
            exit.Code = 1;
            return;
        }
        if (options.Json)
        {
            var payload = new Dictionary<string, object?>
            {
                ["prompt_ids"] = promptIds,
                ["ids"] = result.Ids,
                ["text"] = result.Text,
                ["world_size"] = setup.Ring.WorldSize,
                ["ms_per_token"] = Math.Round(result.MsPerToken, 3),
                ["prefill_ms"] = Math.Round(result.PrefillMs, 3),
                ["finish_reason"] = result.Finish,
                ["control_share"] = Math.Round(result.ControlShare, 4),
            };
            _out.WriteLine(JsonSerializer.Serialize(payload));
        }
        else
        {
            _out.WriteLine();
            _out.Flush(); // the completion goes out before the summary on the other stream
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"[{result.Ids.Length} tokens, {result.MsPerToken:F2} ms/token, prefill {result.PrefillMs:F1} ms, world size {setup.Ring.WorldSize}, finish: {result.Finish}, control plane {result.ControlShare:P1} of decode time]"));
        }
        _out.Flush();
    }

    private async Task InteractiveAsync(CancellationToken ct)
    {
        bool terminal = !Console.IsInputRedirected;
        if (terminal)
        {
            _out.WriteLine($"actorring: {setup.Ring.WorldSize} rank(s) ready. Type a prompt; /reset clears the conversation, /exit quits.");
        }
        while (!ct.IsCancellationRequested)
        {
            if (terminal)
            {
                _out.Write("> ");
                _out.Flush();
            }
            // Console reads cannot be cancelled; run the read aside so Ctrl-C/SIGTERM never waits on stdin.
            string? line = await Task.Run(Console.In.ReadLine, CancellationToken.None).WaitAsync(ct);
            if (line is null) break; // end of input
            string trimmed = line.Trim();
            if (trimmed == "/exit") break;
            if (trimmed == "/reset")
            {
                ResetConversation();
                if (terminal) _out.WriteLine("(conversation cleared)");
                else _out.WriteLine();
                _out.Flush();
                continue;
            }

            var tokens = NextTurnTokens(line);
            if (tokens.Count + options.Sampling.MaxTokens > _context)
            {
                Console.Error.WriteLine($"(the conversation would exceed the context of {_context} tokens; starting a new one)");
                ResetConversation();
                tokens = NextTurnTokens(line);
            }
            Action<string>? stream = terminal ? text => { _out.Write(text); _out.Flush(); } : null;
            var result = await CompleteAsync(tokens.ToArray(), stream, ct);
            if (result.Failure is not null)
            {
                ResetConversation();
                Console.Error.WriteLine($"error: {result.Failure}");
                if (!terminal) _out.WriteLine();
            }
            else
            {
                _conversation.Clear();
                _conversation.AddRange(tokens);
                if (result.Ids.Length > 1) _conversation.AddRange(result.Ids[..^1]);
                _pending = result.Finish == "stop" || result.Ids.Length == 0 ? null : result.Ids[^1];
                _out.WriteLine(terminal ? "" : Escape(result.Text));
            }
            _out.Flush();
        }
    }

    /// <summary>The tokens of the next turn: the last sampled token (never fed yet), then the new text. Only a
    /// fresh conversation starts with BOS.</summary>
    private List<int> NextTurnTokens(string line)
    {
        var tokens = new List<int>(_conversation);
        if (_pending is int p) tokens.Add(p);
        tokens.AddRange(_tokenizer!.Encode(line, addBos: tokens.Count == 0));
        return tokens;
    }

    private void ResetConversation()
    {
        _conversation.Clear();
        _pending = null;
    }

    /// <param name="ControlShare">Share of decode step time spent outside the ranks' compute and collectives
    /// (actor messaging and scheduling), as the coordinator measured it.</param>
    private sealed record Completion(int[] Ids, string Text, string Finish, double PrefillMs, double MsPerToken,
        string? Failure, double ControlShare = 0);

    /// <summary>
    /// Runs one request. Text comes from the model layer's <see cref="StopConditions"/> (the same logic as the
    /// in-process generate): EOS is not rendered, a stop string cuts the text and ends the request, and the ids
    /// end at the token that stopped it.
    /// </summary>
    private async Task<Completion> CompleteAsync(int[] tokens, Action<string>? onText, CancellationToken ct)
    {
        // Without a tokenizer (random --preset model) there is no text and no EOS: max_tokens ends the request.
        var stop = _tokenizer is null ? null : StopConditions.For(_tokenizer, options.Sampling, tokens);
        var text = new StringBuilder();
        var ids = new List<int>();
        string? stoppedBy = null;
        var spec = ServeOptions.ToSpec(options.Sampling, _tokenizer?.EosIds ?? [], options.Sampling.MaxTokens);
        var request = new GenerateRequest(Guid.NewGuid().ToString("N")[..12], 0, tokens, 0, spec,
            options.Sampling.StopStrings is { Count: > 0 } stops ? stops.ToArray() : null);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ct);
        await foreach (var message in client.GenerateAsync(request, cancel.Token, idleTimeout: options.ReadyTimeout))
        {
            switch (message)
            {
                case TokenGenerated t when stoppedBy is null:
                    ids.Add(t.TokenId);
                    if (stop is null) break;
                    var check = stop.Append(t.TokenId);
                    text.Append(check.Text);
                    if (check.Text.Length > 0) onText?.Invoke(check.Text);
                    if (check.Stopped)
                    {
                        // The scheduler stops on the same token (the request carries the stop strings), so the
                        // completion follows at once, with no extra step.
                        stoppedBy = check.FinishReason ?? "stop";
                    }
                    break;
                case GenerationCompleted c:
                    log.LogInformation("request {Id}: {Count} tokens, {Finish}, prefill {Prefill} ms, {Ms} ms/token, control share {Share}",
                        c.RequestId, c.TokenIds.Length, c.FinishReason,
                        c.PrefillMs.ToString("0.#", CultureInfo.InvariantCulture),
                        c.MsPerToken.ToString("0.###", CultureInfo.InvariantCulture),
                        c.ControlShare.ToString("P1", CultureInfo.InvariantCulture));
                    return new Completion(ids.ToArray(), text.ToString(), stoppedBy ?? c.FinishReason,
                        c.PrefillMs, c.MsPerToken, null, ControlShare: c.ControlShare);
                case GenerationFailed f:
                    return new Completion([], text.ToString(), "error", 0, 0, f.Reason);
            }
        }
        throw new InvalidOperationException("the coordinator ended the stream without a result");
    }

    private static string Escape(string text) =>
        text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\r", "\\r", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private async Task ShutdownClusterAsync()
    {
        try
        {
            await client.ShutdownAsync("the one-shot request finished", TimeSpan.FromSeconds(5));
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException or Akka.Actor.AskTimeoutException)
        {
            Console.Error.WriteLine($"warning: could not tell the other ranks to stop: {e.Message}");
        }
    }
}
