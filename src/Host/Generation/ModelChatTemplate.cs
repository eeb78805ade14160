using ActorRing.Model;
using ActorRing.Model.Tokenization;
using ActorRing.Templating;

namespace ActorRing.Host.Generation;

/// <summary>
/// The chat template of a model as served: <c>--chat-template FILE</c>, else what the model's directory holds
/// (<see cref="ChatTemplates.Load"/>: chat_template.jinja, chat_template.json, tokenizer_config.json), else, for a
/// GGUF file, the <c>tokenizer.chat_template</c> in its metadata (where llama.cpp's converter puts the model's
/// template), else the plain newline join.
/// </summary>
internal static class ModelChatTemplate
{
    /// <exception cref="ChatTemplateException">A template is missing, malformed or does not parse.</exception>
    /// <exception cref="TokenizerFormatException">The GGUF file cannot be read.</exception>
    public static IChatTemplate Load(ModelDirectory model, string? overrideFile)
    {
        var template = ChatTemplates.Load(model.Path, overrideFile);
        if (template is not PlainChatTemplate || model.Format != ModelFormat.Gguf) return template;
        return GgufTokenizer.ReadChatTemplate(model.Path) is { } embedded
            ? ChatTemplates.FromSource(embedded.Source, embedded.BosToken, embedded.EosToken, $"{model.Path} (tokenizer.chat_template)")
            : template;
    }
}
