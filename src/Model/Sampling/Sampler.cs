using System.Numerics;
using System.Security.Cryptography;

namespace ActorRing.Model.Sampling;

/// <summary>
/// Picks the next token from full-vocabulary logits on rank 0, in the order Hugging Face applies the same
/// settings: repetition penalty, temperature, top-k, top-p, then a draw from the sampler's own seeded RNG.
/// Everything depends only on the logits, the previous tokens and the seed, never on world size or thread timing.
/// One sampler per sequence; not thread-safe (it reuses scratch buffers and advances its RNG).
/// </summary>
public sealed class Sampler
{
    private readonly DeterministicRng _rng;
    private readonly ITokenConstraint? _constraint;
    private float[] _scores = [];
    private double[] _weights = [];
    private int[] _candidates = [];
    private int[] _seenStamp = [];
    private int _stamp;

    /// <param name="constraint">Which tokens may come next (e.g. OpenAI's JSON mode); null: any. It follows the picks
    /// only through its own Accept, which the caller calls.</param>
    public Sampler(SamplingOptions options, ITokenConstraint? constraint = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _constraint = constraint;
        Options = options.Validate();
        Seed = options.Seed ?? BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
        _rng = new DeterministicRng(Seed);
    }

    public SamplingOptions Options { get; }

    /// <summary>The seed in use: the requested one, or the random one drawn when none was given (report it to reproduce a run).</summary>
    public ulong Seed { get; }

    /// <summary>Index of the largest logit; the lowest index wins a tie, so greedy decoding is reproducible.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("logits must not be empty", nameof(logits));
        }

        var best = 0;
        var bestValue = logits[0];
        for (var i = 1; i < logits.Length; i++)
        {
            // Strictly greater keeps the first of equal maxima.
            if (logits[i] > bestValue || float.IsNaN(bestValue))
            {
                best = i;
                bestValue = logits[i];
            }
        }

        return best;
    }

    /// <summary>
    /// <see cref="ArgMax"/>'s pick (the first of equal maxima) for logits that must hold no NaN, in two vector passes
    /// instead of a copy and two scalar ones: the maximum (with a NaN check on the side), then the first index equal
    /// to it. Comparing with == finds the same index whichever zero the vector maximum keeps of -0 and +0.
    /// </summary>
    /// <exception cref="ArgumentException">A logit is NaN (a broken forward pass), naming its index.</exception>
    private static int GreedyArgMax(ReadOnlySpan<float> logits)
    {
        int n = logits.Length, i = 0, width = Vector<float>.Count;
        float max = float.NegativeInfinity;
        bool nan = false;
        if (Vector.IsHardwareAccelerated && n >= width)
        {
            var vmax = new Vector<float>(float.NegativeInfinity);
            var ordered = Vector<int>.AllBitsSet;
            for (; i <= n - width; i += width)
            {
                var v = new Vector<float>(logits.Slice(i, width));
                vmax = Vector.Max(vmax, v);
                ordered &= Vector.Equals(v, v); // false only in a NaN lane
            }
            nan = ordered != Vector<int>.AllBitsSet;
            for (int lane = 0; lane < width; lane++) if (vmax[lane] > max) max = vmax[lane];
        }
        for (; i < n; i++)
        {
            if (float.IsNaN(logits[i])) nan = true;
            else if (logits[i] > max) max = logits[i];
        }
        if (nan)
        {
            int at = 0;
            while (!float.IsNaN(logits[at])) at++;
            throw new ArgumentException($"logits[{at}] is NaN", nameof(logits));
        }
        i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var target = new Vector<float>(max);
            while (i <= n - width && !Vector.EqualsAny(new Vector<float>(logits.Slice(i, width)), target)) i += width;
        }
        while (logits[i] != max) i++;
        return i;
    }

    /// <param name="logits">Logits over the whole vocabulary for the position being sampled.</param>
    /// <param name="previousTokens">Tokens already in the sequence (prompt and generated) for the repetition penalty.</param>
    public int Sample(ReadOnlySpan<float> logits, IReadOnlyList<int> previousTokens) =>
        Sample(logits, previousTokens, promptLength: 0).TokenId;

    /// <param name="logits">Logits over the whole vocabulary for the position being sampled.</param>
    /// <param name="previousTokens">Tokens already in the sequence, prompt then generated. The repetition penalty
    /// looks at all of them; the presence and frequency penalties (OpenAI's) at the generated ones only.</param>
    /// <param name="promptLength">How many of <paramref name="previousTokens"/> are the prompt.</param>
    public SampledToken Sample(ReadOnlySpan<float> logits, IReadOnlyList<int> previousTokens, int promptLength)
    {
        ArgumentNullException.ThrowIfNull(previousTokens);
        var token = Pick(logits, previousTokens, promptLength);
        return Options.Logprobs is int top ? Logprobs(logits, token, top) : new SampledToken(token);
    }

    private bool BelowMinTokens(IReadOnlyList<int> previousTokens, int promptLength) =>
        Options.MinTokens > 0 && Options.StopTokenIds is { Count: > 0 } && previousTokens.Count - promptLength < Options.MinTokens;

    private int Pick(ReadOnlySpan<float> logits, IReadOnlyList<int> previousTokens, int promptLength)
    {
        var n = logits.Length;
        if (n == 0)
        {
            throw new ArgumentException("logits must not be empty", nameof(logits));
        }

        if (_constraint is null && Options.IsGreedy && Options.RepetitionPenalty == 1 && Options.PresencePenalty == 0 && Options.FrequencyPenalty == 0 && !Options.HasLogitBias
            && !BelowMinTokens(previousTokens, promptLength))
        {
            // Nothing rewrites the scores, so the pick needs neither their copy nor a scalar pass: on rank 0's step
            // loop this runs for every greedy row of every step, serially before the next plan goes out.
            return GreedyArgMax(logits);
        }

        EnsureCapacity(n);
        var scores = _scores.AsSpan(0, n);
        logits.CopyTo(scores);
        for (var i = 0; i < n; i++)
        {
            if (float.IsNaN(scores[i]))
            {
                // A NaN would silently turn every later comparison false; it always means a broken forward pass.
                throw new ArgumentException($"logits[{i}] is NaN", nameof(logits));
            }
        }

        if (Options.HasLogitBias)
        {
            // OpenAI adds the bias to the model's logits, so it comes first; the penalties then see biased scores.
            foreach (var (id, bias) in Options.LogitBias!)
            {
                if (id >= n)
                {
                    throw new ArgumentException($"logit_bias names token {id}, but the model's vocabulary is [0, {n})");
                }

                scores[id] += bias;
            }
        }

        if (BelowMinTokens(previousTokens, promptLength))
        {
            // vLLM's min_tokens: no stop id (EOS included) can be picked before the completion is that long.
            foreach (var id in Options.StopTokenIds!)
            {
                if ((uint)id < (uint)n)
                {
                    scores[id] = float.NegativeInfinity;
                }
            }
        }

        if (Options.RepetitionPenalty != 1)
        {
            ApplyRepetitionPenalty(scores, previousTokens);
        }

        if (Options.PresencePenalty != 0 || Options.FrequencyPenalty != 0)
        {
            ApplyPresenceAndFrequencyPenalties(scores, previousTokens, promptLength);
        }

        if (Options.IsGreedy)
        {
            return _constraint is null ? ArgMax(scores) : ConstrainedArgMax(scores);
        }

        if (_constraint is not null)
        {
            RemoveDisallowed(scores);
        }

        var top = ArgMax(scores);
        var max = scores[top];
        if (float.IsNegativeInfinity(max))
        {
            throw new ArgumentException("every logit is -infinity; there is no token to sample", nameof(logits));
        }

        if (float.IsPositiveInfinity(max))
        {
            // An infinite logit has probability 1 (shared with any equal ones); take the first, as greedy would.
            return ArgMax(scores);
        }

        // Softmax in double after subtracting the maximum: exp never overflows, and dividing by the temperature
        // after the subtraction is the same distribution as softmax(logits / T).
        var weights = _weights.AsSpan(0, n);
        double total = 0;
        var invT = 1.0 / Options.Temperature;
        for (var i = 0; i < n; i++)
        {
            var w = Math.Exp((scores[i] - (double)max) * invT);
            weights[i] = w;
            total += w;
        }

        var count = SelectCandidates(scores, weights, total, top, out var candidateTotal);
        var candidates = _candidates.AsSpan(0, count);

        if (Options.TopP < 1)
        {
            // Nucleus: the fewest most-probable tokens whose probability reaches top_p (the one that crosses it is kept).
            var threshold = Options.TopP * candidateTotal;
            double cumulative = 0;
            var keep = count;
            for (var j = 0; j < count; j++)
            {
                cumulative += weights[candidates[j]];
                if (cumulative >= threshold)
                {
                    keep = j + 1;
                    break;
                }
            }

            candidates = candidates[..keep];
            candidateTotal = 0;
            foreach (var c in candidates)
            {
                candidateTotal += weights[c];
            }
        }

        if (Options.MinP > 0)
        {
            // min-p: drop tokens less likely than min_p times the most likely one. Weights are relative to the
            // top token's (its weight is exp(0) = 1), and the candidates are sorted, so the kept ones are a prefix.
            var keep = 1;
            while (keep < candidates.Length && weights[candidates[keep]] >= Options.MinP)
            {
                keep++;
            }

            candidates = candidates[..keep];
            candidateTotal = 0;
            foreach (var c in candidates)
            {
                candidateTotal += weights[c];
            }
        }

        var r = _rng.NextDouble() * candidateTotal;
        double acc = 0;
        foreach (var c in candidates)
        {
            acc += weights[c];
            if (r < acc)
            {
                return c;
            }
        }

        // Rounding can leave r a hair above the running sum; the last candidate with weight is the honest answer.
        for (var j = candidates.Length - 1; j >= 0; j--)
        {
            if (weights[candidates[j]] > 0)
            {
                return candidates[j];
            }
        }

        return candidates[0];
    }

    /// <summary>
    /// The greedy pick among the allowed tokens. The model's own favourite is allowed most of the time, so the best
    /// few are tried one by one before every token is checked; either way the pick is the first of the highest
    /// allowed scores, as <see cref="ArgMax"/> over the masked scores would give.
    /// </summary>
    private int ConstrainedArgMax(Span<float> scores)
    {
        const int Tries = 8;
        for (var i = 0; i < Tries; i++)
        {
            var best = ArgMax(scores);
            if (float.IsNegativeInfinity(scores[best]))
            {
                break;
            }

            if (_constraint!.Allows(best))
            {
                return best;
            }

            scores[best] = float.NegativeInfinity;
        }

        RemoveDisallowed(scores);
        return ArgMax(scores);
    }

    /// <summary>Sets every disallowed token's score to -infinity; throws when no token is left.</summary>
    private void RemoveDisallowed(Span<float> scores)
    {
        if (!_constraint!.RemoveDisallowed(scores))
        {
            throw new InvalidOperationException("no token may come next: the response format allows none of those the other settings leave");
        }
    }

    // Fills _candidates with the tokens that survive top-k (and a lossless pre-filter for top-p), ordered by
    // score descending with the lower index first on ties. Returns the count and the candidates' total weight
    // before top-p (top-p is relative to the distribution after top-k, as in Hugging Face).
    private int SelectCandidates(Span<float> scores, Span<double> weights, double total, int top, out double candidateTotal)
    {
        var n = scores.Length;
        var k = Options.TopK > 0 && Options.TopK < n ? Options.TopK : n;
        var count = 0;
        if (k < n)
        {
            count = TopKInto(scores, k);
            candidateTotal = 0;
            for (var j = 0; j < count; j++)
            {
                candidateTotal += weights[_candidates[j]];
            }
        }
        else
        {
            // A token other than the top one with probability below (1 - top_p) / (n - 1) cannot be in the nucleus:
            // it and everything ranked after it (at most n - 1 tokens) hold less than 1 - top_p. Dropping those
            // first changes nothing but the sort size (llama2.c uses the same bound). The top token always stays.
            var cutoff = Options.TopP < 1 && n > 1 ? (1 - Options.TopP) / (n - 1) * total : 0;
            for (var i = 0; i < n; i++)
            {
                if ((weights[i] >= cutoff && weights[i] > 0) || i == top)
                {
                    _candidates[count++] = i;
                }
            }

            candidateTotal = total;
        }

        var s = _scores;
        Array.Sort(_candidates, 0, count, Comparer<int>.Create((a, b) =>
        {
            var c = s[b].CompareTo(s[a]);
            return c != 0 ? c : a.CompareTo(b);
        }));
        return count;
    }

    // Keeps the k best (score desc, index asc) in a min-heap whose root is the worst kept token: O(n log k).
    private int TopKInto(Span<float> scores, int k)
    {
        var heap = _candidates;
        var size = 0;
        for (var i = 0; i < scores.Length; i++)
        {
            if (size < k)
            {
                heap[size] = i;
                SiftUp(heap, size++, scores);
            }
            else if (Better(i, heap[0], scores))
            {
                heap[0] = i;
                SiftDown(heap, size, scores);
            }
        }

        return size;
    }

    private static bool Better(int a, int b, Span<float> s) => s[a] > s[b] || (s[a] == s[b] && a < b);

    private static void SiftUp(int[] heap, int i, Span<float> s)
    {
        while (i > 0)
        {
            var parent = (i - 1) / 2;
            if (!Better(heap[parent], heap[i], s))
            {
                break;
            }

            (heap[parent], heap[i]) = (heap[i], heap[parent]);
            i = parent;
        }
    }

    private static void SiftDown(int[] heap, int size, Span<float> s)
    {
        var i = 0;
        while (true)
        {
            var l = (2 * i) + 1;
            var r = l + 1;
            var worst = i;
            if (l < size && Better(heap[worst], heap[l], s))
            {
                worst = l;
            }

            if (r < size && Better(heap[worst], heap[r], s))
            {
                worst = r;
            }

            if (worst == i)
            {
                return;
            }

            (heap[worst], heap[i]) = (heap[i], heap[worst]);
            i = worst;
        }
    }

    // CTRL / Hugging Face rule: a token already in the sequence has its logit divided by the penalty when
    // positive and multiplied when negative, so a penalty > 1 always makes it less likely. Each token once.
    private void ApplyRepetitionPenalty(Span<float> scores, IReadOnlyList<int> previousTokens)
    {
        var penalty = Options.RepetitionPenalty;
        if (++_stamp == int.MaxValue)
        {
            Array.Clear(_seenStamp);
            _stamp = 1;
        }

        foreach (var t in previousTokens)
        {
            if ((uint)t >= (uint)scores.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(previousTokens), t, $"previous token {t} is outside the vocabulary of {scores.Length} logits");
            }

            if (_seenStamp[t] == _stamp)
            {
                continue;
            }

            _seenStamp[t] = _stamp;
            var v = scores[t];
            scores[t] = v > 0 ? v / penalty : v * penalty;
        }
    }

    // OpenAI's rule: each generated token's logit loses frequency_penalty per occurrence so far, plus
    // presence_penalty once if it occurred at all. The prompt does not count (as in vLLM).
    private void ApplyPresenceAndFrequencyPenalties(Span<float> scores, IReadOnlyList<int> previousTokens, int promptLength)
    {
        var counts = new Dictionary<int, int>();
        for (var i = Math.Max(0, promptLength); i < previousTokens.Count; i++)
        {
            var t = previousTokens[i];
            if ((uint)t >= (uint)scores.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(previousTokens), t, $"previous token {t} is outside the vocabulary of {scores.Length} logits");
            }

            counts[t] = counts.GetValueOrDefault(t) + 1;
        }

        foreach (var (t, count) in counts)
        {
            scores[t] -= (Options.FrequencyPenalty * count) + Options.PresencePenalty;
        }
    }

    // Log-softmax of the raw logits (in double, after subtracting the maximum), and the `top` most likely tokens,
    // most likely first with the lower id first on ties.
    private static SampledToken Logprobs(ReadOnlySpan<float> logits, int token, int top)
    {
        var max = logits[ArgMax(logits)];
        double sum = 0;
        foreach (var v in logits)
        {
            sum += Math.Exp(v - (double)max);
        }

        var logSum = Math.Log(sum) + max;
        var best = new List<int>(top + 1);
        for (var i = 0; i < logits.Length && top > 0; i++)
        {
            var v = logits[i];
            if (best.Count == top && v <= logits[best[^1]])
            {
                continue;
            }

            var at = best.Count;
            while (at > 0 && v > logits[best[at - 1]])
            {
                at--;
            }

            best.Insert(at, i);
            if (best.Count > top)
            {
                best.RemoveAt(best.Count - 1);
            }
        }

        var alternatives = new TokenProbability[best.Count];
        for (var j = 0; j < best.Count; j++)
        {
            alternatives[j] = new TokenProbability(best[j], (float)(logits[best[j]] - logSum));
        }

        return new SampledToken(token, (float)(logits[token] - logSum), alternatives);
    }

    private void EnsureCapacity(int n)
    {
        if (_scores.Length >= n)
        {
            return;
        }

        _scores = new float[n];
        _weights = new double[n];
        _candidates = new int[n];
        var seen = new int[n];
        _seenStamp.CopyTo(seen, 0);
        _seenStamp = seen;
    }
}
