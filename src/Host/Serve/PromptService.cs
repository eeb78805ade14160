using System.Globalization;
using System.Text;
using System.Text.Json;
using ActorRing.Host.Generation;
using ActorRing.Templating;
using Microsoft.Extensions.Hosting;

namespace ActorRing.Host.Serve;

/// <summary>
/// Rank 0's terminal front end, a thin client of <see cref="GenerationService"/>. In one-shot mode (<c>--prompt</c>,
/// used by <c>generate --world-size N</c>) it runs one completion, prints it like <c>generate</c>, and shuts every
/// rank down. In <c>--interactive</c> mode it is a chat: on a terminal it streams text as it arrives; on a pipe it
/// reads one prompt per line and writes one completion per line (newlines inside a completion are written as
/// <c>\n</c>, backslashes as <c>\\</c>), so scripts can drive it. Each turn sends the whole conversation through
/// the chat template as a new request; <c>/reset</c> clears it and <c>/exit</c> quits.
/// </summary>
internal sealed class PromptService(
    ServeOptions options,
    ServeCommand.RankSetup setup,
    GenerationService service,
    IHostApplicationLifetime lifetime,
    ServeExit exit) : BackgroundService
{
    private readonly TextWriter _out = exit.Out;
    private readonly List<ChatMessage> _conversation = new();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            var client = await service.ClientAsync();
            await client.WaitReadyAsync(options.ReadyTimeout,
                s => Console.Error.WriteLine($"[cluster] {s.Detail}"), stoppingToken);
            if (options.OneShot) await OneShotAsync(stoppingToken);
            else await InteractiveAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Ctrl-C or SIGTERM: the host is already stopping.
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException or IOException or GenerationRequestException or ChatTemplateException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            exit.Code = 1;
        }
        finally
        {
            if (options.OneShot) await ShutdownClusterAsync();
            lifetime.StopApplication();
        }
    }

    private async Task OneShotAsync(CancellationToken ct)
    {
        var promptIds = options.PromptIds ?? service.Encode(options.Prompt!).ToArray();
        await WarmUpAsync(promptIds, ct);
        // Text mode streams the completion as it comes, like generate; JSON prints one object at the end.
        var result = await CompleteAsync(promptIds, options.Json ? null : piece => { _out.Write(piece); _out.Flush(); }, ct);
        if (result.Failure is not null)
        {
            Console.Error.WriteLine($"error: {result.Failure}");
            exit.Code = 1;
            return;
        }
        var done = result.Finished!;
        if (options.Json)
        {
            _out.WriteLine(JsonSerializer.Serialize(new OneShotResult(promptIds, result.Ids, result.Text, setup.Ring.WorldSize,
                Math.Round(done.Timings.MsPerToken, 3), Math.Round(done.Timings.PrefillMs, 3), done.FinishReason,
                Math.Round(done.Timings.ControlShare, 4))));
        }
        else
        {
            _out.WriteLine();
            _out.Flush(); // the completion goes out before the summary on the other stream
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"[{result.Ids.Length} tokens, {done.Timings.MsPerToken:F2} ms/token, prefill {done.Timings.PrefillMs:F1} ms, world size {setup.Ring.WorldSize}, finish: {done.FinishReason}, control plane {done.Timings.ControlShare:P1} of decode time]"));
        }
        _out.Flush();
    }

    /// <summary>What <c>generate --json</c> prints, field for field.</summary>
    private sealed record OneShotResult(
        [property: System.Text.Json.Serialization.JsonPropertyName("prompt_ids")] int[] PromptIds,
        [property: System.Text.Json.Serialization.JsonPropertyName("ids")] int[] Ids,
        [property: System.Text.Json.Serialization.JsonPropertyName("text")] string Text,
        [property: System.Text.Json.Serialization.JsonPropertyName("world_size")] int WorldSize,
        [property: System.Text.Json.Serialization.JsonPropertyName("ms_per_token")] double MsPerToken,
        [property: System.Text.Json.Serialization.JsonPropertyName("prefill_ms")] double PrefillMs,
        [property: System.Text.Json.Serialization.JsonPropertyName("finish_reason")] string FinishReason,
        [property: System.Text.Json.Serialization.JsonPropertyName("control_share")] double ControlShare);

    private async Task InteractiveAsync(CancellationToken ct)
    {
        bool terminal = !Console.IsInputRedirected;
        if (terminal)
        {
            _out.WriteLine($"actorring: {setup.Ring.WorldSize} rank(s) ready. Type a prompt; /reset clears the conversation, /exit quits.");
        }
        bool warmedUp = false;
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
                _conversation.Clear();
                if (terminal) _out.WriteLine("(conversation cleared)");
                else _out.WriteLine();
                _out.Flush();
                continue;
            }

            Action<string>? stream = terminal ? text => { _out.Write(text); _out.Flush(); } : null;
            Completion result;
            try
            {
                var turn = NextTurnTokens(line);
                if (!warmedUp)
                {
                    await WarmUpAsync(turn, ct);
                    warmedUp = true;
                }
                result = await CompleteAsync(turn, stream, ct);
            }
            catch (Exception e) when (e is GenerationRequestException or ChatTemplateException)
            {
                result = new Completion([], "", null, e.Message);
            }
            if (result.Failure is not null)
            {
                Console.Error.WriteLine($"error: {result.Failure}");
                if (!terminal) _out.WriteLine();
            }
            else
            {
                _conversation.Add(new ChatMessage("user", line));
                _conversation.Add(new ChatMessage("assistant", result.Text));
                _out.WriteLine(terminal ? "" : Escape(result.Text));
            }
            _out.Flush();
        }
    }

    /// <summary>The whole conversation with the new line as the user's turn, through the chat template. When it
    /// would not leave room for max_tokens, the oldest turns go first (and the user hears about it).</summary>
    private int[] NextTurnTokens(string line)
    {
        while (true)
        {
            var ids = service.EncodeChat([.. _conversation, new ChatMessage("user", line)]);
            if (ids.Count + options.Sampling.MaxTokens <= service.ContextLength || _conversation.Count == 0) return ids.ToArray();
            Console.Error.WriteLine($"(the conversation would exceed the context of {service.ContextLength} tokens; starting a new one)");
            _conversation.Clear();
        }
    }

    private sealed record Completion(int[] Ids, string Text, FinishedEvent? Finished, string? Failure);

    /// <summary>
    /// Runs a two-token completion of the prompt's first few tokens through the whole client path (the coordinator
    /// client, the generation service, stop conditions and text decoding, this service's own reading) and drops
    /// it, before the user's first prompt. Tiered compilation is off (see the host project), so each method on
    /// that path is compiled at its first call: on the bundled model that was 8-15 ms of compiling on thread-pool
    /// threads in the middle of the first request's decode, on the cores the ranks compute on. A failure here is
    /// left for the real request to report.
    /// </summary>
    private async Task WarmUpAsync(int[] promptIds, CancellationToken ct)
    {
        if (promptIds.Length == 0) return;
        try
        {
            await CompleteAsync(promptIds[..Math.Min(promptIds.Length, 4)], _ => { }, ct, maxTokens: 2);
        }
        catch (GenerationRequestException)
        {
            // The warm-up's own few tokens do not fit (a tiny --context): the user's request, validated next, says
            // what is wrong with it in its own figures, not the warm-up's.
            return;
        }
        // The warm-up's own ending (its log line, compiled and written by the console logger's thread) runs on
        // after its result is read; let it finish before the real request's decode competes with it for a core.
        await Task.Delay(TimeSpan.FromMilliseconds(50), ct);
    }

    private async Task<Completion> CompleteAsync(int[] promptIds, Action<string>? onText, CancellationToken ct, int? maxTokens = null)
    {
        maxTokens ??= service.ResolveMaxTokens(promptIds.Length, options.Sampling.MaxTokens, options.Sampling.MaxTokens, "prompt");
        // A terminal user would rather wait for a rank that is coming back than get an error.
        var input = new GenerationInput(promptIds, options.Sampling with { MaxTokens = maxTokens.Value }, WaitForCluster: true);
        service.Validate(input, "prompt");
        var ids = new List<int>();
        var text = new StringBuilder();
        await foreach (var e in service.GenerateAsync(input, ct))
        {
            switch (e)
            {
                case TokenEvent t:
                    ids.Add(t.TokenId);
                    break;
                case TextEvent x:
                    text.Append(x.Text);
                    onText?.Invoke(x.Text);
                    break;
                case FinishedEvent f:
                    return new Completion(ids.ToArray(), text.ToString(), f, null);
                case FailedEvent f:
                    return new Completion(ids.ToArray(), text.ToString(), null, f.Message);
            }
        }
        ct.ThrowIfCancellationRequested();
        return new Completion(ids.ToArray(), text.ToString(), null, "the request ended without a result");
    }

    private static string Escape(string text) =>
        text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\r", "\\r", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private async Task ShutdownClusterAsync()
    {
        try
        {
            var client = await service.ClientAsync();
            await client.ShutdownAsync("the one-shot request finished", TimeSpan.FromSeconds(5));
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException or Akka.Actor.AskTimeoutException or InvalidOperationException)
        {
            Console.Error.WriteLine($"warning: could not tell the other ranks to stop: {e.Message}");
        }
    }
}
