namespace ActorRing.Templating.Tests;

/// <summary>
/// A reasoning model's answer split into its thinking and its answer, whole and piece by piece, for the three ways a
/// prompt leaves the think block: open (DeepSeek-R1), not yet opened (Qwen3), or closed empty (Qwen3 with
/// enable_thinking false).
/// </summary>
public class ThinkSplitterTests
{
    private static (string Reasoning, string Content) Whole(string prompt, string answer) => Pieces(prompt, [answer]);

    /// <summary>Pushes the pieces one by one and joins what comes out, checking nothing comes out twice.</summary>
    private static (string Reasoning, string Content) Pieces(string prompt, IEnumerable<string> pieces)
    {
        var splitter = ThinkSplitter.ForPrompt(prompt);
        string reasoning = "", content = "";
        foreach (var piece in pieces)
        {
            var (r, c) = splitter.Push(piece);
            reasoning += r;
            content += c;
        }
        var (rr, cc) = splitter.Finish();
        return (reasoning + rr, content + cc);
    }

    private static IEnumerable<string> CharByChar(string text) => text.Select(c => c.ToString());

    private const string Qwen3Prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    private const string Qwen3NoThinking = Qwen3Prompt + "<think>\n\n</think>\n\n";
    private const string R1Prompt = "<｜User｜>Hi<｜Assistant｜><think>\n";

    [Theory]
    [InlineData(Qwen3Prompt, "<think>\nThe user greets me.\n</think>\n\nHello!", "The user greets me.", "Hello!")]
    [InlineData(Qwen3Prompt, "Hello!", "", "Hello!")] // the model skipped thinking
    [InlineData(Qwen3NoThinking, "Hello! <think> is a tag.", "", "Hello! <think> is a tag.")]
    [InlineData(R1Prompt, "Greeting.\nTwo lines.\n</think>\n\nHello!", "Greeting.\nTwo lines.", "Hello!")]
    [InlineData(R1Prompt, "Still thinking when max_tokens", "Still thinking when max_tokens", "")] // cut off inside
    [InlineData(Qwen3Prompt, "<think>\n</think>\n\nHi", "", "Hi")]
    [InlineData(Qwen3Prompt, "a </think> b", "", "a </think> b")] // no block opened: all answer
    public void An_answer_splits_the_same_whole_or_character_by_character(string prompt, string answer, string reasoning, string content)
    {
        Assert.Equal((reasoning, content), Whole(prompt, answer));
        Assert.Equal((reasoning, content), Pieces(prompt, CharByChar(answer)));
    }

    [Fact]
    public void Text_goes_out_as_soon_as_its_side_is_known_and_a_partial_tag_is_held()
    {
        var splitter = ThinkSplitter.ForPrompt(R1Prompt);
        Assert.Equal(("Let me", ""), splitter.Push("Let me"));
        Assert.Equal((" think.", ""), splitter.Push(" think.\n</thi")); // "\n" and "</thi" held
        Assert.Equal(("", "The"), splitter.Push("nk>\n\nThe"));
        Assert.Equal(("", " end."), splitter.Push(" end."));
        Assert.Equal(("", ""), splitter.Finish());

        var qwen = ThinkSplitter.ForPrompt(Qwen3Prompt);
        Assert.Equal(("", ""), qwen.Push("<thi")); // may open a block: held
        Assert.Equal(("Hmm", ""), qwen.Push("nk>\nHmm"));
    }

    [Theory]
    [InlineData("qwen3", true)]
    [InlineData("deepseek_r1_distill", true)]
    [InlineData("qwen2_5", false)]
    [InlineData("llama3_2", false)]
    public void A_template_teaches_thinking_when_it_writes_the_think_block(string model, bool thinks)
    {
        var template = ChatTemplates.Load(Path.Combine(AppContext.BaseDirectory, "ChatTemplateData", "models", model));
        Assert.Equal(thinks, template.TeachesThinking);
    }
}
