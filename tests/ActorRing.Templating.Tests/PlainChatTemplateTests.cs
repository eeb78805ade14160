using ActorRing.Templating;

namespace ActorRing.Templating.Tests;

public class PlainChatTemplateTests
{
    [Fact]
    public void Joins_the_contents_in_order_without_role_markup()
    {
        var text = new PlainChatTemplate().Render(
            [new ChatMessage("system", "Be brief."), new ChatMessage("user", "Once upon a time")], addGenerationPrompt: true);
        Assert.Equal("Be brief.\nOnce upon a time", text);
    }
}
