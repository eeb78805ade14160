namespace ActorRing.Templating.Tests;

/// <summary>How a model's template is found: override file, chat_template.jinja, chat_template.json,
/// tokenizer_config.json, or none (the plain template).</summary>
public sealed class ChatTemplatesTests : IDisposable
{
    private readonly string _model = Directory.CreateTempSubdirectory("actorring-template-").FullName;

    public void Dispose() => Directory.Delete(_model, recursive: true);

    private void Write(string file, string text) => File.WriteAllText(Path.Combine(_model, file), text);

    private static readonly ChatMessage[] Hello = [new("user", "Hi")];

    [Fact]
    public void A_model_without_a_template_gets_the_plain_one()
    {
        Assert.IsType<PlainChatTemplate>(ChatTemplates.Load(_model, null));
        Write("tokenizer_config.json", """{"bos_token": "<s>", "chat_template": null}""");
        Assert.IsType<PlainChatTemplate>(ChatTemplates.Load(_model, null));
    }

    [Fact]
    public void Tokenizer_config_gives_the_template_and_the_token_strings_in_either_form()
    {
        Write("tokenizer_config.json", """
            {"bos_token": {"__type": "AddedToken", "content": "<B>", "lstrip": false},
             "eos_token": "<E>",
             "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"}
            """);
        var template = Assert.IsType<JinjaChatTemplate>(ChatTemplates.Load(_model, null));
        Assert.Equal("<B>", template.BosToken);
        Assert.Equal("<E>", template.EosToken);
        Assert.Equal("<B>user:Hi<E>assistant:", template.Render(Hello, addGenerationPrompt: true));
        Assert.Equal("<B>user:Hi<E>", template.Render(Hello, addGenerationPrompt: false));
    }

    [Fact]
    public void A_list_of_named_templates_takes_the_default()
    {
        Write("tokenizer_config.json", """
            {"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "default {{ messages[0].content }}"}]}
            """);
        Assert.Equal("default Hi", ChatTemplates.Load(_model, null).Render(Hello, false));
    }

    [Fact]
    public void With_tools_a_tool_use_template_is_taken_as_hugging_face_takes_it()
    {
        Write("tokenizer_config.json", """
            {"chat_template": [{"name": "default", "template": "plain {{ messages[0].content }}"},
                               {"name": "tool_use", "template": "tools {{ tools | map(attribute='name') | join(',') }}: {{ messages[0].content }}"}]}
            """);
        var template = Assert.IsType<JinjaChatTemplate>(ChatTemplates.Load(_model, null));
        Assert.Equal("plain Hi", template.Render(Hello, false));
        var tools = new List<object?> { new Dictionary<string, object?> { ["name"] = "search" } };
        Assert.Equal("tools search: Hi", template.Render([Hello[0]], false, tools));
    }

    [Fact]
    public void A_list_without_a_default_is_refused_with_the_names_and_the_fix()
    {
        Write("tokenizer_config.json", """{"chat_template": [{"name": "tool_use", "template": "a"}, {"name": "rag", "template": "b"}]}""");
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplates.Load(_model, null));
        Assert.Equal($"\"chat_template\" in {Path.Combine(_model, "tokenizer_config.json")} has named templates (tool_use, rag) but none named \"default\"; pass one with --chat-template FILE", error.Message);
    }

    [Fact]
    public void Chat_template_files_beat_tokenizer_config_and_the_override_beats_all()
    {
        Write("tokenizer_config.json", """{"eos_token": "<E>", "chat_template": "from config"}""");
        Assert.Equal("from config", ChatTemplates.Load(_model, null).Render(Hello, false));
        Write("chat_template.json", """{"chat_template": "from chat_template.json"}""");
        Assert.Equal("from chat_template.json", ChatTemplates.Load(_model, null).Render(Hello, false));
        Write("chat_template.jinja", "from jinja file{{ eos_token }}\n");
        Assert.Equal("from jinja file<E>", ChatTemplates.Load(_model, null).Render(Hello, false));
        var overrideFile = Path.Combine(_model, "mine.jinja");
        File.WriteAllText(overrideFile, "override {{ messages | length }}{{ eos_token }}");
        Assert.Equal("override 1<E>", ChatTemplates.Load(_model, overrideFile).Render(Hello, false));
    }

    [Fact]
    public void A_missing_model_directory_is_named_and_a_checkpoint_file_stands_for_its_directory()
    {
        var missing = Path.Combine(_model, "no-such-model");
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplates.Load(missing, null));
        Assert.Equal($"model directory '{missing}' does not exist; give the directory that holds the model's tokenizer_config.json", error.Message);

        Write("tokenizer_config.json", """{"chat_template": "from the directory"}""");
        Write("model.bin", "weights");
        Assert.Equal("from the directory", ChatTemplates.Load(Path.Combine(_model, "model.bin"), null).Render(Hello, false));
    }

    [Fact]
    public void A_missing_override_file_is_named()
    {
        var missing = Path.Combine(_model, "nope.jinja");
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplates.Load(_model, missing));
        Assert.Equal($"--chat-template '{missing}' does not exist; give the path of a Jinja template file", error.Message);
    }

    [Fact]
    public void Malformed_files_are_named()
    {
        Write("tokenizer_config.json", "{ not json");
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplates.Load(_model, null));
        Assert.StartsWith($"{Path.Combine(_model, "tokenizer_config.json")} is not valid JSON: ", error.Message);

        Write("tokenizer_config.json", """{"eos_token": 5}""");
        error = Assert.Throws<ChatTemplateException>(() => ChatTemplates.Load(_model, null));
        Assert.Equal($"\"eos_token\" in {Path.Combine(_model, "tokenizer_config.json")} must be a string or an object with a \"content\" string", error.Message);

        Write("tokenizer_config.json", """{"chat_template": 7}""");
        error = Assert.Throws<ChatTemplateException>(() => ChatTemplates.Load(_model, null));
        Assert.Equal($"\"chat_template\" in {Path.Combine(_model, "tokenizer_config.json")} is a Number; expected a string or a list of named templates", error.Message);
    }

    [Fact]
    public void A_template_that_does_not_parse_is_refused_at_load_with_its_origin_and_position()
    {
        Write("chat_template.jinja", "{% for m in messages %}\n{{ m.content }");
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplates.Load(_model, null));
        Assert.Equal($"the chat template from {Path.Combine(_model, "chat_template.jinja")} does not parse: chat template syntax error at line 2, column 1: tag is never closed; add }}}}", error.Message);
    }

    [Fact]
    public void Strftime_now_reads_the_clock_as_llama_3_2_asks_it_to()
    {
        var dataDirectory = Path.Combine(AppContext.BaseDirectory, "ChatTemplateData", "models", "llama3_2");
        var loaded = Assert.IsType<JinjaChatTemplate>(ChatTemplates.Load(dataDirectory, null));
        var source = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dataDirectory, "tokenizer_config.json")))
            .RootElement.GetProperty("chat_template").GetString()!;
        var template = new JinjaChatTemplate(source, loaded.BosToken, loaded.EosToken, new FixedTimeProvider(new DateTimeOffset(2025, 3, 7, 23, 59, 0, TimeSpan.Zero)));
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 07 Mar 2025\n\n<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render(Hello, addGenerationPrompt: true));
    }

    [Fact]
    public void Qwen2_5_through_the_plain_interface_adds_its_default_system_prompt()
    {
        var template = ChatTemplates.Load(Path.Combine(AppContext.BaseDirectory, "ChatTemplateData", "models", "qwen2_5"), null);
        Assert.Equal(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            template.Render(Hello, addGenerationPrompt: true));
    }
}
