using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace ActorRing.Model.Tests;

/// <summary>
/// Writes the tokenizer.json that Hugging Face's converter (LlamaConverter) makes from a SentencePiece BPE model:
/// the pieces as vocabulary, merges derived from it (every split of a piece into two pieces, ordered by the merged
/// piece's rank), byte_fallback, the Prepend/Replace normalizer and the Replace/ByteFallback/Fuse/Strip decoder.
/// </summary>
internal static class SentencePieceJson
{
    public static string FromModel(string modelPath)
    {
        using var stream = File.OpenRead(modelPath);
        var spm = LlamaTokenizer.Create(stream);
        var vocab = spm.Vocabulary.OrderBy(kv => kv.Value).ToList();
        var ids = vocab.ToDictionary(kv => kv.Key, kv => kv.Value);
        var merges = new List<(string, string, int, int, int)>();
        foreach (var (piece, id) in vocab)
        {
            for (var k = 1; k < piece.Length; k++)
            {
                if (ids.TryGetValue(piece[..k], out var l) && ids.TryGetValue(piece[k..], out var r))
                {
                    merges.Add((piece[..k], piece[k..], id, l, r));
                }
            }
        }

        // SentencePiece BPE scores fall with the id, so ordering by id is ordering by score.
        var orderedMerges = merges.OrderBy(m => m.Item3).ThenBy(m => m.Item4).ThenBy(m => m.Item5)
            .Select(m => (JsonNode)new JsonArray(m.Item1, m.Item2)).ToArray();
        var vocabJson = new JsonObject();
        foreach (var (piece, id) in vocab)
        {
            vocabJson[piece] = id;
        }

        JsonObject Added(int id, string content) => new() { ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true };
        JsonObject Replace(string from, string to) => new() { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = from }, ["content"] = to };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(Added(0, "<unk>"), Added(1, "<s>"), Added(2, "</s>")),
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(new JsonObject { ["type"] = "Prepend", ["prepend"] = "\u2581" }, Replace(" ", "\u2581")),
            },
            ["pre_tokenizer"] = null,
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
            },
            ["decoder"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(Replace("\u2581", " "), new JsonObject { ["type"] = "ByteFallback" }, new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = "<unk>",
                ["fuse_unk"] = true,
                ["byte_fallback"] = true,
                ["vocab"] = vocabJson,
                ["merges"] = new JsonArray(orderedMerges),
            },
        };
        return root.ToJsonString();
    }
}
