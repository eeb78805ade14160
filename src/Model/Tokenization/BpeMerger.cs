using System.Collections.Concurrent;
using System.Text;

namespace ActorRing.Model.Tokenization;

/// <summary>
/// The BPE model of a Hugging Face <c>tokenizer.json</c>: turns one pre-tokenized word into ids by applying merges
/// in rank order, exactly as the Rust <c>tokenizers</c> crate does (a priority queue of adjacent pairs, lowest rank
/// first, leftmost on ties), with <c>byte_fallback</c>, <c>unk_token</c>/<c>fuse_unk</c> and <c>ignore_merges</c>.
/// Symbols are ids in a linked list, so a merge is O(log n) and builds no strings; finished words are cached.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers' <c>BpeTokenizer</c> is not used for encoding because it cannot express these files:
/// it has no <c>ignore_merges</c> (Llama 3 takes whole words from the vocabulary before merging), no
/// <c>byte_fallback</c> (Llama 2, Mistral and Gemma spell unknown characters as &lt;0xNN&gt; tokens), and one
/// pre-tokenizer where Qwen2 and DeepSeek V3 chain several Split regexes with different behaviors. One engine for
/// every tokenizer.json keeps the parity tests meaningful for all of them; <c>actorring bench tokenize</c> measures
/// it against the library on a vocabulary both can load.
/// </remarks>
internal sealed class BpeMerger
{
    // Bounded so that a long-running server fed adversarial text cannot grow the cache without limit.
    private const int MaxCachedWords = 200_000;
    private const int MaxCachedWordLength = 64;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, (int Rank, int Merged)> _merges;
    private readonly bool _ignoreMerges;
    private readonly int _unkId;
    private readonly bool _fuseUnk;
    private readonly int[]? _byteIds;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly Dictionary<char, int> _singleChar = new();

    /// <param name="byteIds">Per byte value the id of its &lt;0xNN&gt; token, when byte_fallback is on; else null.</param>
    public BpeMerger(Dictionary<string, int> vocab, IReadOnlyList<(string Left, string Right)> merges, bool ignoreMerges,
        int unkId, bool fuseUnk, int[]? byteIds)
    {
        _vocab = vocab;
        _ignoreMerges = ignoreMerges;
        _unkId = unkId;
        _fuseUnk = fuseUnk;
        _byteIds = byteIds;
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _vocabBySpan = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _merges = new Dictionary<long, (int, int)>(merges.Count);
        for (var rank = 0; rank < merges.Count; rank++)
        {
            var (left, right) = merges[rank];

            // A merge whose parts or result are missing from the vocabulary can never fire (the Rust crate refuses
            // such files; converted files occasionally carry a few, which are harmless to skip).
            if (vocab.TryGetValue(left, out var l) && vocab.TryGetValue(right, out var r) && vocab.TryGetValue(left + right, out var m))
            {
                _merges.TryAdd(Key(l, r), (rank, m));
            }
        }

        foreach (var (token, id) in vocab)
        {
            if (token.Length == 1)
            {
                _singleChar[token[0]] = id;
            }
        }
    }

    /// <summary>Appends the ids of <paramref name="word"/> (already normalized, pre-tokenized and, for byte-level models, mapped to the byte alphabet).</summary>
    /// <exception cref="TokenizerFormatException">A symbol has no id and the model has neither byte_fallback nor unk_token.</exception>
    public void Encode(ReadOnlySpan<char> word, List<int> output, string nameForErrors)
    {
        if (word.IsEmpty)
        {
            return;
        }

        // Span lookups: a word seen before costs no allocation at all.
        if (_ignoreMerges && _vocabBySpan.TryGetValue(word, out var whole))
        {
            output.Add(whole);
            return;
        }

        if (_cacheBySpan.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }

        var text = word.ToString();
        var ids = Merge(text, nameForErrors);
        if (text.Length <= MaxCachedWordLength)
        {
            if (_cache.Count >= MaxCachedWords)
            {
                _cache.Clear();
            }

            _cache.TryAdd(text, ids);
        }

        output.AddRange(ids);
    }

    private int[] Merge(string word, string nameForErrors)
    {
        // Initial symbols: one per code point, or its UTF-8 bytes as <0xNN> tokens, or unk.
        var ids = new List<int>(word.Length);
        var previousWasUnk = false;
        for (var i = 0; i < word.Length;)
        {
            var length = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            int id;
            var found = length == 1 ? _singleChar.TryGetValue(word[i], out id) : _vocab.TryGetValue(word.Substring(i, 2), out id);
            if (found)
            {
                ids.Add(id);
                previousWasUnk = false;
            }
            else if (_byteIds is not null && TryAddBytes(word.AsSpan(i, length), ids))
            {
                previousWasUnk = false;
            }
            else if (_unkId >= 0)
            {
                if (!(_fuseUnk && previousWasUnk))
                {
                    ids.Add(_unkId);
                }

                previousWasUnk = true;
            }
            else
            {
                var text = word.Substring(i, length);
                throw new TokenizerFormatException($"tokenizer file '{nameForErrors}' has no token for \"{text}\" ({string.Join(" ", text.Select(c => $"U+{(int)c:X4}"))}) and neither byte_fallback nor an unk_token");
            }

            i += length;
        }

        if (ids.Count < 2)
        {
            return [.. ids];
        }

        var n = ids.Count;
        var symbol = ids.ToArray();
        var next = new int[n];
        var prev = new int[n];
        for (var i = 0; i < n; i++)
        {
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
        }

        // Queue entries are (left position, the merged id it would produce); stale entries are skipped when popped.
        var queue = new PriorityQueue<(int Pos, int Merged), (int Rank, int Pos)>();
        for (var i = 0; i + 1 < n; i++)
        {
            if (_merges.TryGetValue(Key(symbol[i], symbol[i + 1]), out var m))
            {
                queue.Enqueue((i, m.Merged), (m.Rank, i));
            }
        }

        var alive = n;
        while (queue.TryDequeue(out var entry, out var priority))
        {
            var left = entry.Pos;
            var right = next[left];

            // Removed symbols get symbol -1; a changed left or right symbol no longer forms this pair.
            if (symbol[left] < 0 || right < 0
                || !_merges.TryGetValue(Key(symbol[left], symbol[right]), out var current) || current.Merged != entry.Merged || current.Rank != priority.Rank)
            {
                continue;
            }

            symbol[left] = entry.Merged;
            symbol[right] = -1;
            next[left] = next[right];
            if (next[right] >= 0)
            {
                prev[next[right]] = left;
            }

            alive--;
            if (prev[left] >= 0 && _merges.TryGetValue(Key(symbol[prev[left]], symbol[left]), out var before))
            {
                queue.Enqueue((prev[left], before.Merged), (before.Rank, prev[left]));
            }

            if (next[left] >= 0 && _merges.TryGetValue(Key(symbol[left], symbol[next[left]]), out var after))
            {
                queue.Enqueue((left, after.Merged), (after.Rank, left));
            }
        }

        var result = new int[alive];
        var k = 0;
        for (var i = 0; i >= 0; i = next[i])
        {
            result[k++] = symbol[i];
        }

        return result;
    }

    private bool TryAddBytes(ReadOnlySpan<char> codePoint, List<int> ids)
    {
        Span<byte> utf8 = stackalloc byte[8];

        // A lone surrogate is not valid UTF-16; like every UTF-8 encoder here it becomes U+FFFD (EF BF BD).
        var count = Encoding.UTF8.GetBytes(codePoint, utf8);
        for (var b = 0; b < count; b++)
        {
            if (_byteIds![utf8[b]] < 0)
            {
                return false;
            }
        }

        for (var b = 0; b < count; b++)
        {
            ids.Add(_byteIds![utf8[b]]);
        }

        return true;
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;
}
