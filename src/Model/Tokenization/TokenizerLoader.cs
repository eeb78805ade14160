using System.Text.Json;

namespace ActorRing.Model.Tokenization;

/// <summary>Finds and loads the tokenizer of a model directory by what the directory contains.</summary>
public static class TokenizerLoader
{
    /// <summary>
    /// Loads, in order of preference: a byte-level BPE <c>tokenizer.json</c> (Llama 3, Qwen2), a SentencePiece
    /// <c>tokenizer.model</c>, a SentencePiece-style <c>tokenizer.json</c> (Llama 2, Mistral, Gemma exports without
    /// the .model), a llama2.c <c>tokenizer.bin</c>, or a single llama2.c <c>tok*.bin</c>.
    /// <paramref name="path"/> may also name one of those files directly.
    /// </summary>
    /// <exception cref="TokenizerFormatException">Nothing usable is found, or the file is malformed; the message names the path.</exception>
    public static ITextTokenizer Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (File.Exists(path))
        {
            return LoadFile(path);
        }

        if (!Directory.Exists(path))
        {
            throw new TokenizerFormatException($"model path '{path}' does not exist");
        }

        var json = Path.Combine(path, "tokenizer.json");
        var spm = Path.Combine(path, "tokenizer.model");
        if (File.Exists(json))
        {
            using var doc = ParseJson(json);

            // Llama 2 / Mistral directories ship a SentencePiece-converted tokenizer.json next to tokenizer.model;
            // the .model file is the exact original, so it wins unless the JSON is byte-level BPE.
            if (HuggingFaceBpeTokenizer.IsByteLevelJson(doc.RootElement) || !File.Exists(spm))
            {
                return LoadJson(json, doc.RootElement);
            }
        }

        if (File.Exists(spm))
        {
            return SentencePieceTextTokenizer.Load(spm, ReadConfigEosIds(path));
        }

        var bin = Path.Combine(path, "tokenizer.bin");
        if (File.Exists(bin))
        {
            return Llama2cTokenizer.Load(bin);
        }

        var tok = Directory.GetFiles(path, "tok*.bin");
        Array.Sort(tok, StringComparer.Ordinal);
        return tok.Length switch
        {
            1 => Llama2cTokenizer.Load(tok[0]),
            0 => throw new TokenizerFormatException($"no tokenizer found in '{path}': expected tokenizer.json (Hugging Face), tokenizer.model (SentencePiece) or a llama2.c tokenizer.bin / tok*.bin"),
            _ => throw new TokenizerFormatException($"several llama2.c tokenizers in '{path}' ({string.Join(", ", tok.Select(Path.GetFileName))}); keep one or name it as tokenizer.bin"),
        };
    }

    private static ITextTokenizer LoadFile(string file)
    {
        var name = Path.GetFileName(file);
        if (name.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            using var doc = ParseJson(file);
            return LoadJson(file, doc.RootElement);
        }

        if (name.EndsWith(".model", StringComparison.OrdinalIgnoreCase))
        {
            return SentencePieceTextTokenizer.Load(file, ReadConfigEosIds(Path.GetDirectoryName(Path.GetFullPath(file))!));
        }

        if (name.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
        {
            return Llama2cTokenizer.Load(file);
        }

        if (name.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            return GgufTokenizer.Load(file);
        }

        throw new TokenizerFormatException($"'{file}' is not a tokenizer file this loader knows (tokenizer.json, *.model, llama2.c *.bin)");
    }

    private static HuggingFaceBpeTokenizer LoadJson(string jsonPath, System.Text.Json.JsonElement root)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(jsonPath))!;
        var configPath = Path.Combine(dir, "tokenizer_config.json");
        var config = File.Exists(configPath) ? ReadText(configPath) : null;
        return HuggingFaceBpeTokenizer.FromDocument(root, jsonPath, config, ReadConfigEosIds(dir));
    }

    /// <summary>
    /// The eos_token_id of config.json (an int or a list), without repeats. Instruct models end turns with a
    /// token (Llama 3's &lt;|eot_id|&gt;) that only the model's files list; every one of them must stop a
    /// generation. generation_config.json's ids are not read here: they are a generation default
    /// (<see cref="Sampling.GenerationDefaults"/>), which <c>--generation-config ignore</c> turns off.
    /// </summary>
    public static IReadOnlyList<int> ReadConfigEosIds(string modelDirectory)
    {
        var eos = new List<int>();
        foreach (var file in new[] { "config.json" })
        {
            var p = Path.Combine(modelDirectory, file);
            if (File.Exists(p))
            {
                foreach (var id in ReadEosIds(p))
                {
                    if (!eos.Contains(id))
                    {
                        eos.Add(id);
                    }
                }
            }
        }

        return eos;
    }

    private static JsonDocument ParseJson(string path)
    {
        try
        {
            return JsonDocument.Parse(ReadText(path));
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException($"tokenizer file '{path}' is not valid JSON: {e.Message}", e);
        }
    }

    private static IEnumerable<int> ReadEosIds(string path)
    {
        var ids = new List<int>();
        try
        {
            using var doc = JsonDocument.Parse(ReadText(path));
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("eos_token_id", out var e))
            {
                var values = e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().ToList() : [e];
                foreach (var v in values)
                {
                    if (v.ValueKind == JsonValueKind.Null)
                    {
                        continue;
                    }

                    if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var id) || id < 0)
                    {
                        throw new TokenizerFormatException($"'{path}' has eos_token_id {e.GetRawText()}; expected a non-negative integer or a list of them");
                    }

                    ids.Add(id);
                }
            }
        }
        catch (JsonException ex)
        {
            throw new TokenizerFormatException($"'{path}' is not valid JSON: {ex.Message}", ex);
        }

        return ids;
    }

    private static string ReadText(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerFormatException($"cannot read '{path}': {e.Message}", e);
        }
    }
}
