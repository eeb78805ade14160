using System.Diagnostics;
using ActorRing.Transport;

namespace ActorRing.Model.Generation;

/// <summary>What one generation produced (on rank 0; other ranks get the same ids).</summary>
public sealed record GenerationResult(
    IReadOnlyList<int> PromptIds,
    IReadOnlyList<int> GeneratedIds,
    string FinishReason,
    double PrefillMs,
    double MsPerToken);

/// <summary>
/// The single-request loop every rank runs in lockstep: one forward over the whole prompt, then one forward
/// per generated token. Rank 0 chooses each token (its controller samples and checks stop conditions) and
/// broadcasts it with a continue/stop flag, so all ranks feed the same tokens and stop together.
/// </summary>
public static class TensorParallelGeneration
{
    // The second int of each broadcast: continue, or why generation ended (so every rank reports the same).
    private static readonly string[] FinishReasons = ["", "stop", "length", "cancelled"];

    /// <param name="controller">Rank 0's controller; ignored (may be null) on other ranks.</param>
    /// <param name="cancellation">Observed on rank 0 only, and turned into a stop that every rank sees.</param>
    public static GenerationResult Run(ShardedLlama model, ICollectives comm, IReadOnlyList<int> promptIds,
        IGenerationController? controller, int slot = 0, CancellationToken cancellation = default)
    {
        if (promptIds.Count == 0) throw new ArgumentException("the prompt needs at least one token", nameof(promptIds));
        bool root = comm.Rank == 0;
        if (root && controller is null) throw new ArgumentNullException(nameof(controller), "rank 0 needs a controller");

        var sequence = new List<int>(promptIds);
        var generated = new List<int>();
        var clock = Stopwatch.StartNew();
        model.ResetSlot(slot);
        var ids = promptIds.ToArray();
        float[]? logits = model.Forward(slot, ids, 0);
        double prefillMs = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        int position = ids.Length, decodeSteps = 0;
        string finish;
        Span<int> message = stackalloc int[2];

        while (true)
        {
            if (root)
            {
                int token = controller!.Choose(logits, sequence);
                string? reason = controller.Accept(token) ? controller.FinishReason ?? "stop" : null;
                if (reason is null && cancellation.IsCancellationRequested) reason = "cancelled";
                // The next token would need a position the cache does not have.
                if (reason is null && position >= model.ContextLength) reason = "length";
                message[0] = token;
                message[1] = reason is null ? 0 : Math.Max(1, Array.IndexOf(FinishReasons, reason));
            }
            if (comm.WorldSize > 1) comm.Broadcast(message, 0);
            generated.Add(message[0]);
            sequence.Add(message[0]);
            if (message[1] != 0)
            {
                finish = FinishReasons[message[1]];
                break;
            }
            logits = model.Forward(slot, message[..1], position++);
            decodeSteps++;
        }
        double msPerToken = decodeSteps == 0 ? 0 : clock.Elapsed.TotalMilliseconds / decodeSteps;
        return new GenerationResult(promptIds, generated, finish, prefillMs, msPerToken);
    }
}
