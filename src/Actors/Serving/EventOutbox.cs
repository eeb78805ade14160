using System.Diagnostics;

namespace ActorRing.Actors.Serving;

/// <summary>
/// Hands the step loop's events to the clients, holding back the tokens of steps that come faster than
/// <see cref="Interval"/>. Every client is an actor, and a Tell to an idle actor wakes a thread-pool thread (a
/// futex call on the compute thread, then a thread that takes a core from a compute thread): on the bundled model,
/// whose steps take ~0.6 ms, that was most of the loop's time outside the model. Coalesced, one wake carries
/// several tokens. Rules, so a held token is never late by more than about one interval:
/// <list type="bullet">
/// <item>anything but a plain next token (a request's first token, its end, a failure) goes out at once, with
/// everything held before it;</item>
/// <item>tokens are held only across a step expected to be short: decode only, after a step that took under half
/// the interval (<see cref="BeforeStep"/>); a prefill chunk, or any slower step (every real model), delivers
/// first;</item>
/// <item>the loop flushes before it waits for work and when it ends.</item>
/// </list>
/// Order is kept per request and across requests.
/// </summary>
public sealed class EventOutbox(TimeSpan interval)
{
    /// <summary>Default for serving: far below what a reader of a stream can notice, and several bundled-model steps.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromMilliseconds(2);

    private readonly List<ServingEvent> _held = [];
    private long _lastFlush = Stopwatch.GetTimestamp();

    public TimeSpan Interval { get; } = interval;

    /// <summary>Takes a step's events: holds plain next tokens, and delivers at once (with everything held) when
    /// any other event is among them.</summary>
    public void Add(IReadOnlyList<ServingEvent> events)
    {
        if (events.Count == 0) return;
        bool urgent = false;
        foreach (var e in events)
        {
            _held.Add(e);
            urgent |= e.Message is not TokenGenerated { Index: > 0 };
        }
        if (urgent) Flush();
    }

    /// <summary>Before a step: delivers what is held unless the step is expected to be short
    /// (<paramref name="shortStep"/>) and the last delivery was less than <see cref="Interval"/> ago.</summary>
    public void BeforeStep(bool shortStep)
    {
        if (_held.Count > 0 && (!shortStep || Stopwatch.GetElapsedTime(_lastFlush) >= Interval)) Flush();
    }

    /// <summary>Delivers everything held, in order.</summary>
    public void Flush()
    {
        _lastFlush = Stopwatch.GetTimestamp();
        if (_held.Count == 0) return;
        foreach (var e in _held) e.Deliver();
        _held.Clear();
    }
}
