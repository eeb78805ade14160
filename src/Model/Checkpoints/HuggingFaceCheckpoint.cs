using System.Text.Json;

namespace ActorRing.Model.Checkpoints;

/// <summary>
/// A Hugging Face model directory: <c>config.json</c> plus either <c>model.safetensors</c> or shards listed
/// in <c>model.safetensors.index.json</c>. Shard files are opened when first needed.
/// </summary>
internal sealed class HuggingFaceCheckpoint : ICheckpointReader
{
    private readonly string _dir;
    private readonly Dictionary<string, string> _weightMap = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SafetensorsFile> _open = new(StringComparer.Ordinal);

    public ModelConfig Config { get; }
    public string Source => _dir;

    public HuggingFaceCheckpoint(string dir)
    {
        _dir = dir;
        string configPath = System.IO.Path.Combine(dir, "config.json");
        Config = ModelConfig.FromHuggingFaceJson(File.ReadAllText(configPath), configPath);

        string index = System.IO.Path.Combine(dir, "model.safetensors.index.json");
        string single = System.IO.Path.Combine(dir, "model.safetensors");
        if (File.Exists(index))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"{index}: missing weight_map object");
            foreach (var p in map.EnumerateObject())
            {
                string file = p.Value.GetString() ?? "";
                if (file.Contains('/') || file.Contains('\\') || file.Contains(".."))
                    throw new ModelLoadException($"{index}: weight_map entry {p.Name} names file '{file}' outside the model directory");
                _weightMap[p.Name] = file;
            }
        }
        else if (File.Exists(single))
        {
            foreach (var name in Open("model.safetensors").Entries.Keys) _weightMap[name] = "model.safetensors";
        }
        else
        {
            throw new ModelLoadException($"{dir}: has config.json but neither model.safetensors nor model.safetensors.index.json");
        }
        FindLanguageModel();
    }

    /// <summary>Our tensor name → the checkpoint's, where they differ (the text model inside an image-and-text one).</summary>
    private readonly Dictionary<string, string> _diskName = new(StringComparer.Ordinal);

    /// <summary>
    /// An image-and-text checkpoint (Gemma 3 4B and up) keeps its text model under <c>language_model.model.</c> (and
    /// its head under <c>language_model.lm_head</c>), or, as transformers saves it since 4.52, under
    /// <c>model.language_model.</c>: those tensors are read under our names, and the vision tower's are never read.
    /// </summary>
    private void FindLanguageModel()
    {
        if (_weightMap.ContainsKey("model.embed_tokens.weight")) return;
        foreach (var (body, head) in new[] { ("language_model.model.", "language_model.lm_head."), ("model.language_model.", "lm_head.") })
        {
            if (!_weightMap.ContainsKey(body + "embed_tokens.weight")) continue;
            foreach (var disk in _weightMap.Keys.ToArray())
            {
                if (disk.StartsWith(body, StringComparison.Ordinal)) _diskName["model." + disk[body.Length..]] = disk;
                else if (disk.StartsWith(head, StringComparison.Ordinal)) _diskName["lm_head." + disk[head.Length..]] = disk;
            }
            return;
        }
    }

    private string Disk(string name) => _diskName.TryGetValue(name, out var disk) ? disk : name;

    private SafetensorsFile Open(string file)
    {
        if (!_open.TryGetValue(file, out var f))
        {
            string path = System.IO.Path.Combine(_dir, file);
            if (!File.Exists(path)) throw new ModelLoadException($"{_dir}: shard {file} listed in the index does not exist");
            f = new SafetensorsFile(path);
            _open[file] = f;
        }
        return f;
    }

    private SafetensorsEntry Entry(string ours)
    {
        string name = Disk(ours);
        if (!_weightMap.TryGetValue(name, out var file))
            throw new ModelLoadException($"{_dir}: tensor {name} is missing from the checkpoint");
        var f = Open(file);
        return f.Entries.TryGetValue(name, out var e) ? e
            : throw new ModelLoadException($"{_dir}: tensor {name} is listed in the index under {file} but that file does not hold it");
    }

    public bool Contains(string name) => _weightMap.ContainsKey(Disk(name));

    public long BytesRead => _open.Values.Sum(f => f.BytesRead);

    public long[] Shape(string name) => Entry(name).Shape;

    public void ReadBlock(string name, long row0, long rows, long col0, long cols, Span<float> destination)
    {
        var file = Open(_weightMap[Disk(name)]);
        if (!Config.Glm4 || !IsQkRow(name))
        {
            file.ReadBlock(Entry(name), row0, rows, col0, cols, destination);
            return;
        }
        // glm4 stores each head's rotated dimensions in interleaved pairs: our rotate-half row t·(R/2) + i (t = 0, 1)
        // is its row 2i + t, within the first R = RotaryDim rows of the head; the rest are where they are. A bias is
        // read as one row whose columns are those rows.
        int d = Config.HeadDim, rotary = Config.RotaryDim, half = rotary / 2;
        long Stored(long ours)
        {
            long head = ours / d, j = ours % d;
            return j < rotary ? head * d + 2 * (j % half) + j / half : ours;
        }
        if (name.EndsWith(".bias", StringComparison.Ordinal))
        {
            for (long c = 0; c < cols; c++)
                file.ReadBlock(Entry(name), row0, rows, Stored(col0 + c), 1, destination.Slice((int)c, 1));
            return;
        }
        for (long r = 0; r < rows; r++)
            file.ReadBlock(Entry(name), Stored(row0 + r), 1, col0, cols, destination.Slice((int)(r * cols), (int)cols));
    }

    private static bool IsQkRow(string name) =>
        name.EndsWith("self_attn.q_proj.weight", StringComparison.Ordinal) || name.EndsWith("self_attn.k_proj.weight", StringComparison.Ordinal)
        || name.EndsWith("self_attn.q_proj.bias", StringComparison.Ordinal) || name.EndsWith("self_attn.k_proj.bias", StringComparison.Ordinal);

    public void Dispose()
    {
        foreach (var f in _open.Values) f.Dispose();
        _open.Clear();
    }
}
