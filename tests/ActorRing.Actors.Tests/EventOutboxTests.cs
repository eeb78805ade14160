using ActorRing.Actors.Serving;

namespace ActorRing.Actors.Tests;

/// <summary>The step loop's token coalescing: what is held, what goes out at once, and that order is kept.</summary>
public sealed class EventOutboxTests
{
    private static ServingRequest Request(string id, RecordingClient client) =>
        new(id, [1], new SamplingSpec(MaxTokens: 8), new GreedyPickers().Create(new SamplingSpec()), client);

    private static ServingEvent Token(ServingRequest r, int index) => new(r, new TokenGenerated(r.RequestId, index, 100 + index));

    private static List<int> Indexes(RecordingClient c) => c.Events.ToArray().OfType<TokenGenerated>().Select(t => t.Index).ToList();

    [Fact]
    public void Next_tokens_are_held_across_short_steps_and_a_completion_delivers_them_first_in_order()
    {
        var outbox = new EventOutbox(TimeSpan.FromHours(1));
        var a = new RecordingClient();
        var b = new RecordingClient();
        var ra = Request("a", a);
        var rb = Request("b", b);

        outbox.Add([Token(ra, 0), Token(rb, 0)]); // first tokens go out at once (time to first token)
        Assert.Equal([0], Indexes(a));
        Assert.Equal([0], Indexes(b));

        for (int i = 1; i <= 3; i++)
        {
            outbox.BeforeStep(shortStep: true);
            outbox.Add([Token(ra, i), Token(rb, i)]);
        }
        Assert.Equal([0], Indexes(a)); // held: the steps were short and the interval has not passed
        Assert.Equal([0], Indexes(b));

        outbox.Add([Token(ra, 4), new ServingEvent(ra, new GenerationCompleted("a", [100, 101, 102, 103, 104], "length", 0, 0, 0, 0, 0))]);
        Assert.Equal([0, 1, 2, 3, 4], Indexes(a));
        Assert.IsType<GenerationCompleted>(a.Events.ToArray()[^1]);
        Assert.Equal([0, 1, 2, 3], Indexes(b)); // b's held tokens went out with a's completion
    }

    [Fact]
    public void A_step_not_expected_to_be_short_delivers_what_is_held_before_it_runs()
    {
        var outbox = new EventOutbox(TimeSpan.FromHours(1));
        var a = new RecordingClient();
        var ra = Request("a", a);
        outbox.Add([Token(ra, 0)]);
        outbox.Add([Token(ra, 1)]);
        outbox.BeforeStep(shortStep: true);
        Assert.Equal([0], Indexes(a));
        outbox.BeforeStep(shortStep: false); // a prefill chunk, or a slow step
        Assert.Equal([0, 1], Indexes(a));
    }

    [Fact]
    public void Held_tokens_go_out_once_the_interval_has_passed_and_an_interval_of_zero_holds_nothing()
    {
        var outbox = new EventOutbox(TimeSpan.FromMilliseconds(20));
        var a = new RecordingClient();
        var ra = Request("a", a);
        outbox.Add([Token(ra, 0)]);
        outbox.Add([Token(ra, 1)]);
        Thread.Sleep(40);
        outbox.BeforeStep(shortStep: true);
        Assert.Equal([0, 1], Indexes(a));

        var none = new EventOutbox(TimeSpan.Zero);
        var b = new RecordingClient();
        var rb = Request("b", b);
        none.Add([Token(rb, 0)]);
        none.Add([Token(rb, 1)]);
        none.BeforeStep(shortStep: true);
        Assert.Equal([0, 1], Indexes(b));
    }
}
