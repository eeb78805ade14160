using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using ActorRing.Host.Cli;
using ActorRing.Model.Tokenization;
using Microsoft.ML.Tokenizers;

namespace ActorRing.Host.Bench;

/// <summary>
/// <c>actorring bench tokenize</c>: our tokenizer.json encoder against Microsoft.ML.Tokenizers' BpeTokenizer on
/// the same vocabulary, merges and pre-tokenizer regex, over the same mixed text (prose, code, numbers, CJK,
/// emoji), in one process. The two take turns round by round so both see the same machine, and the report says
/// how often their ids agree, since a faster encoder that gives other ids would prove nothing.
/// </summary>
internal static class TokenizeBench
{
    /// <summary>bench tokenize's options; a field declared here is an option.</summary>
    private sealed class Options : OptionGroup
    {
        public readonly Option<string?> Model = Opt.Text("--model", "DIR|FILE",
            "A model directory or tokenizer.json with a byte-level BPE (Qwen2.5/Qwen3, Llama 3, DeepSeek V3); required");
        public readonly Option<long?> Size = Opt.ByteSize("--size", "Text to encode per round, 1KiB to 1GiB [default: 1MiB]");
        public readonly Option<int> Rounds = Opt.Int("--rounds", "Rounds; the two encoders take turns", 5, 1, 1000);
    }

    public static Command Create()
    {
        var options = new Options();
        var command = new Command("tokenize", "Our tokenizer.json encoder against Microsoft.ML.Tokenizers' BpeTokenizer on the same text");
        options.AddTo(command);
        command.SetAction(cli => Run(options, cli));
        return command;
    }

    private static int Run(Options o, ParseResult cli)
    {
        var model = cli.GetValue(o.Model) ?? throw new UsageException(
            "bench tokenize needs --model DIR holding a byte-level tokenizer.json (Qwen2.5/Qwen3, Llama 3, DeepSeek V3); the bundled model has none");
        var size = cli.GetValue(o.Size) ?? 1L << 20;
        if (size < 1024 || size > 1L << 30) throw new UsageException($"option --size must be between 1KiB and 1GiB, got {size}");
        var rounds = cli.GetValue(o.Rounds);

        var jsonPath = Directory.Exists(model) ? Path.Combine(model, "tokenizer.json") : model;
        if (!File.Exists(jsonPath)) throw new UsageException($"option --model: no tokenizer.json at '{jsonPath}'");
        ITextTokenizer ours;
        try
        {
            ours = TokenizerLoader.Load(jsonPath);
        }
        catch (TokenizerFormatException e)
        {
            throw new UsageException(e.Message);
        }

        var library = CreateLibraryTokenizer(jsonPath);
        var text = MixedText(size);
        var lines = text.Split('\n');
        var bytes = Encoding.UTF8.GetByteCount(text);
        Console.Error.WriteLine($"tokenizing {bytes / 1048576.0:F2} MB of mixed text in {lines.Length} lines, {rounds} rounds (after one warm-up round each)…");

        // Agreement first (this also warms both caches): line by line, as a server sees prompts.
        var agree = 0;
        long ourIds = 0, libraryIds = 0;
        foreach (var line in lines)
        {
            var a = ours.Encode(line, addBos: false);
            var b = library.EncodeToIds(line);
            ourIds += a.Count;
            libraryIds += b.Count;
            if (a.SequenceEqual(b)) agree++;
        }

        var oursMs = new List<double>();
        var libraryMs = new List<double>();
        for (var round = 0; round < rounds; round++)
        {
            // Alternate who goes first so neither always runs on a machine the other just heated up.
            if (round % 2 == 0)
            {
                oursMs.Add(Time(() => { foreach (var l in lines) ours.Encode(l, addBos: false); }));
                libraryMs.Add(Time(() => { foreach (var l in lines) library.EncodeToIds(l); }));
            }
            else
            {
                libraryMs.Add(Time(() => { foreach (var l in lines) library.EncodeToIds(l); }));
                oursMs.Add(Time(() => { foreach (var l in lines) ours.Encode(l, addBos: false); }));
            }

            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"round {round + 1}: ours {oursMs[^1]:F0} ms, Microsoft.ML.Tokenizers {libraryMs[^1]:F0} ms"));
        }

        double Mbps(double ms) => bytes / 1048576.0 / (ms / 1000);
        var oursMedian = Median(oursMs);
        var libraryMedian = Median(libraryMs);
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            tokenizer = jsonPath,
            text_mb = Math.Round(bytes / 1048576.0, 3),
            lines = lines.Length,
            rounds,
            ours_ms_median = Math.Round(oursMedian, 1),
            library_ms_median = Math.Round(libraryMedian, 1),
            ours_mb_per_s = Math.Round(Mbps(oursMedian), 2),
            library_mb_per_s = Math.Round(Mbps(libraryMedian), 2),
            speedup_ours_over_library = Math.Round(libraryMedian / oursMedian, 2),
            lines_with_identical_ids = agree,
            ours_ids = ourIds,
            library_ids = libraryIds,
        }));
        return 0;
    }

    /// <summary>
    /// The library's BPE built from the file's vocabulary and merges, with its one pre-tokenizer regex; refuses
    /// files the library cannot express (several regexes, a normalizer that changes text, byte_fallback).
    /// </summary>
    private static BpeTokenizer CreateLibraryTokenizer(string jsonPath)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(jsonPath));
        var root = doc.RootElement;
        var model = root.GetProperty("model");
        var regexes = new List<string>();
        var byteLevel = false;
        void Visit(JsonElement e)
        {
            switch (e.GetProperty("type").GetString())
            {
                case "Sequence":
                    foreach (var x in e.GetProperty("pretokenizers").EnumerateArray()) Visit(x);
                    break;
                case "Split":
                    regexes.Add(e.GetProperty("pattern").GetProperty("Regex").GetString()!);
                    break;
                case "ByteLevel":
                    byteLevel = true;
                    if (!e.TryGetProperty("use_regex", out var ur) || ur.ValueKind != JsonValueKind.False)
                        regexes.Add(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+");
                    break;
                case var other:
                    throw new UsageException($"bench tokenize: '{jsonPath}' uses pre-tokenizer {other}, which Microsoft.ML.Tokenizers' BpeTokenizer cannot express");
            }
        }

        if (root.TryGetProperty("pre_tokenizer", out var pre) && pre.ValueKind == JsonValueKind.Object) Visit(pre);
        if (!byteLevel || regexes.Count != 1)
            throw new UsageException($"bench tokenize: '{jsonPath}' is not a byte-level BPE with one pre-tokenizer regex (it has {regexes.Count}); use Qwen2.5/Qwen3 or Llama 3");

        var vocab = model.GetProperty("vocab").EnumerateObject().Select(p => new KeyValuePair<string, int>(p.Name, p.Value.GetInt32())).ToList();
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.String ? m.GetString()! : m[0].GetString() + " " + m[1].GetString()).ToList();
        return BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(new Regex(regexes[0], RegexOptions.Compiled | RegexOptions.CultureInvariant), null),
        });
    }

    /// <summary>About <paramref name="bytes"/> of UTF-8 text: English prose, code, numbers, CJK and emoji, from a fixed seed.</summary>
    internal static string MixedText(long bytes)
    {
        string[] words =
        [
            "the", "model", "tokenizer", "ring", "tensor", "parallel", "latency", "throughput", "because", "although", "server",
            "request", "streaming", "characters", "Wednesday", "quickly", "don't", "it's", "we'll", "Zürich", "naïve", "café",
        ];
        string[] snippets =
        [
            "def forward(self, x):\n    return self.proj(x) + x\n", "for (int i = 0; i < n; i++) { sum += a[i]; }",
            "自然语言处理是人工智能的一个分支。", "日本語のテキストも少し。", "Привет, как дела?", "🙂 👍🏽 👨‍👩‍👧‍👦 🇫🇷",
            "https://example.com/path?q=42&lang=en", "SELECT id, name FROM users WHERE age > 30;", "\t\tindented\n",
        ];
        var random = new Random(12345);
        var sb = new StringBuilder();
        var utf8 = 0L;
        while (utf8 < bytes)
        {
            var start = sb.Length;
            var kind = random.Next(10);
            if (kind < 6)
            {
                // A sentence of common words, with a number and a rare made-up word so the caches see misses too.
                var n = 8 + random.Next(12);
                for (var i = 0; i < n; i++)
                {
                    sb.Append(i == 0 ? "" : " ").Append(words[random.Next(words.Length)]);
                    if (random.Next(12) == 0) sb.Append(' ').Append(random.Next(100000));
                    if (random.Next(20) == 0) sb.Append(' ').Append((char)('a' + random.Next(26))).Append((char)('a' + random.Next(26))).Append("xq").Append(random.Next(1000));
                }

                sb.Append(random.Next(4) == 0 ? ".\n" : ". ");
            }
            else
            {
                sb.Append(snippets[random.Next(snippets.Length)]).Append('\n');
            }

            utf8 += Encoding.UTF8.GetByteCount(sb.ToString(start, sb.Length - start));
        }

        return sb.ToString();
    }

    private static double Time(Action run)
    {
        var sw = Stopwatch.StartNew();
        run();
        return sw.Elapsed.TotalMilliseconds;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }
}
