namespace ActorRing.Model.Sampling;

/// <summary>
/// A vocabulary's tokens as a trie of their bytes, so that a JSON mask reads each shared prefix once: the tokens
/// that start with "12" are checked by reading "1" and "2" once for all of them, and a byte the answer cannot take
/// rules out every token below it without a look. Each node's children are contiguous (built depth-first from the
/// sorted tokens), and several tokens may end at one node (byte-identical tokens).
/// </summary>
internal sealed class TokenTrie
{
    /// <summary>Per node: the byte that leads to it from its parent (the root's is unused).</summary>
    public readonly byte[] Label;

    /// <summary>Per node: its first child and how many it has.</summary>
    public readonly int[] FirstChild, ChildCount;

    /// <summary>Per node: where its tokens start in <see cref="Tokens"/> and how many end there.</summary>
    public readonly int[] TokensStart, TokensCount;

    /// <summary>Token ids, grouped by the node they end at.</summary>
    public readonly int[] Tokens;

    /// <summary>The longest token, in bytes: the depth of the trie.</summary>
    public readonly int Depth;

    public const int Root = 0;

    /// <param name="include">Which tokens the trie holds (null: every token with bytes).</param>
    public TokenTrie(byte[]?[] tokenBytes, Func<int, bool>? include = null)
    {
        var ids = Enumerable.Range(0, tokenBytes.Length).Where(id => tokenBytes[id] is { Length: > 0 } && (include is null || include(id))).ToArray();
        Array.Sort(ids, (a, b) => tokenBytes[a].AsSpan().SequenceCompareTo(tokenBytes[b]));
        Depth = ids.Length == 0 ? 0 : ids.Max(id => tokenBytes[id]!.Length);
        var label = new List<byte> { 0 };
        var firstChild = new List<int> { 0 };
        var childCount = new List<int> { 0 };
        var tokensStart = new List<int> { 0 };
        var tokensCount = new List<int> { 0 };
        var tokens = new List<int>(ids.Length);

        // Depth-first with an explicit stack: a token can be hundreds of bytes long (runs of spaces).
        var work = new Stack<(int Node, int Lo, int Hi, int Depth)>();
        work.Push((Root, 0, ids.Length, 0));
        var groups = new List<(byte Label, int Lo, int Hi)>();
        while (work.Count > 0)
        {
            var (node, lo, hi, depth) = work.Pop();
            tokensStart[node] = tokens.Count;
            while (lo < hi && tokenBytes[ids[lo]]!.Length == depth) tokens.Add(ids[lo++]); // shorter sorts first
            tokensCount[node] = tokens.Count - tokensStart[node];
            groups.Clear();
            for (int i = lo; i < hi;)
            {
                byte b = tokenBytes[ids[i]]![depth];
                int end = i;
                while (end < hi && tokenBytes[ids[end]]![depth] == b) end++;
                groups.Add((b, i, end));
                i = end;
            }
            firstChild[node] = label.Count;
            childCount[node] = groups.Count;
            foreach (var g in groups)
            {
                label.Add(g.Label);
                firstChild.Add(0);
                childCount.Add(0);
                tokensStart.Add(0);
                tokensCount.Add(0);
            }
            for (int c = 0; c < groups.Count; c++) work.Push((firstChild[node] + c, groups[c].Lo, groups[c].Hi, depth + 1));
        }
        Label = [.. label];
        FirstChild = [.. firstChild];
        ChildCount = [.. childCount];
        TokensStart = [.. tokensStart];
        TokensCount = [.. tokensCount];
        Tokens = [.. tokens];
    }
}
