using System.Text.Json;

namespace ActorRing.Model.Tokenization;

/// <summary>Finds and loads the tokenizer of a model directory by what the directory contains.</summary>
public static class TokenizerLoader
{
    /// <summary>
    /// Loads, in order of preference: a byte-level BPE <c>tokenizer.json</c> (Llama 3, Qwen2), a SentencePiece
    /// <c>tokenizer.model</c>, a llama2.c <c>tokenizer.bin</c>, or a single llama2.c <c>tok*.bin</c>.
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
            var text = ReadText(json);

            // Llama 2 / Mistral directories ship a SentencePiece-converted tokenizer.json next to tokenizer.model;
            // the .model file is the exact original, so it wins unless the JSON is byte-level BPE.
            if (ByteLevelBpeTokenizer.IsByteLevelJson(text) || !File.Exists(spm))
            {
                return LoadByteLevel(json, text);
            }
        }

        if (File.Exists(spm))
        {
            return SentencePieceTextTokenizer.Load(spm);
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
            return LoadByteLevel(file, ReadText(file));
        }

        if (name.EndsWith(".model", StringComparison.OrdinalIgnoreCase))
        {
            return SentencePieceTextTokenizer.Load(file);
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

    private static ByteLevelBpeTokenizer LoadByteLevel(string jsonPath, string jsonText)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(jsonPath))!;
        var configPath = Path.Combine(dir, "tokenizer_config.json");
        var config = File.Exists(configPath) ? ReadText(configPath) : null;

        // Instruct models end turns with a token (Llama 3's <|eot_id|>) that only generation_config.json lists.
        var eos = new List<int>();
        foreach (var file in new[] { "generation_config.json", "config.json" })
        {
            var p = Path.Combine(dir, file);
            if (File.Exists(p))
            {
                eos.AddRange(ReadEosIds(p));
            }
        }

        return ByteLevelBpeTokenizer.FromJson(jsonText, jsonPath, config, eos);
    }

    private static IEnumerable<int> ReadEosIds(string path)
    {
        var ids = new List<int>();
        try
        {
            using var doc = JsonDocument.Parse(ReadText(path));
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("eos_token_id", out var e))
            {
                if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var one))
                {
                    ids.Add(one);
                }
                else if (e.ValueKind == JsonValueKind.Array)
                {
                    ids.AddRange(e.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.Number).Select(x => x.GetInt32()));
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
