using ActorRing.Model.Checkpoints;

namespace ActorRing.Model;

public enum ModelFormat { HuggingFace, Llama2c, Gguf }

/// <summary>
/// A model directory recognised by its contents: a Hugging Face directory (<c>config.json</c> with
/// safetensors), or a llama2.c checkpoint (a <c>*.bin</c> model beside its tokenizer <c>tokenizer.bin</c> /
/// <c>tok*.bin</c>), or a llama.cpp GGUF file (named directly, or the one in a directory; a split set by its
/// first part), whose <see cref="Path"/> is then the file itself.
/// </summary>
public sealed record ModelDirectory(string Path, ModelFormat Format, string? CheckpointFile, string? TokenizerFile)
{
    /// <summary>Where the bundled model lives relative to the executable and the repository root.</summary>
    public const string BundledRelativePath = "models/stories260K";

    /// <summary>Recognises <paramref name="path"/>; a bundle folder holding an <c>hf/</c> (or <c>llama2c/</c>)
    /// sub-directory, like models/stories260K, resolves to that sub-directory.</summary>
    public static ModelDirectory Recognise(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        if (File.Exists(full) && full.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            return new ModelDirectory(full, ModelFormat.Gguf, full, null);
        if (!Directory.Exists(full))
            throw new ModelLoadException($"model directory '{path}' does not exist; pass --model with a Hugging Face directory (config.json) or a llama2.c directory (*.bin + tokenizer.bin)");
        if (File.Exists(System.IO.Path.Combine(full, "config.json")))
            return new ModelDirectory(full, ModelFormat.HuggingFace, null, null);

        // One GGUF model: a single file, or the first part of a split set (…-00001-of-0000N.gguf).
        var ggufs = Directory.GetFiles(full, "*.gguf")
            .Where(f => !System.Text.RegularExpressions.Regex.IsMatch(System.IO.Path.GetFileName(f), @"-\d+-of-\d+\.gguf$", System.Text.RegularExpressions.RegexOptions.IgnoreCase)
                || System.Text.RegularExpressions.Regex.IsMatch(System.IO.Path.GetFileName(f), @"-0*1-of-\d+\.gguf$", System.Text.RegularExpressions.RegexOptions.IgnoreCase))
            .ToArray();
        if (ggufs.Length == 1) return new ModelDirectory(ggufs[0], ModelFormat.Gguf, ggufs[0], null);
        if (ggufs.Length > 1)
            throw new ModelLoadException($"model directory '{path}' holds several GGUF models ({string.Join(", ", ggufs.Select(System.IO.Path.GetFileName))}); pass --model with the file you mean");

        var bins = Directory.GetFiles(full, "*.bin");
        var tokenizers = bins.Where(IsTokenizerName).ToArray();
        var models = bins.Except(tokenizers).ToArray();
        if (models.Length == 1 && tokenizers.Length == 1)
            return new ModelDirectory(full, ModelFormat.Llama2c, models[0], tokenizers[0]);
        if (models.Length > 1)
            throw new ModelLoadException($"model directory '{path}' holds several llama2.c checkpoints ({string.Join(", ", models.Select(System.IO.Path.GetFileName))}); keep one per directory");
        if (models.Length == 1)
            throw new ModelLoadException($"model directory '{path}' holds llama2.c checkpoint {System.IO.Path.GetFileName(models[0])} but no tokenizer.bin beside it");

        foreach (var sub in new[] { "hf", "llama2c" })
        {
            string candidate = System.IO.Path.Combine(full, sub);
            if (Directory.Exists(candidate)) return Recognise(candidate);
        }
        throw new ModelLoadException($"'{path}' is not a model directory: expected config.json (Hugging Face) or a *.bin checkpoint with tokenizer.bin (llama2.c)");
    }

    private static bool IsTokenizerName(string file)
    {
        string name = System.IO.Path.GetFileName(file);
        return name.Equals("tokenizer.bin", StringComparison.OrdinalIgnoreCase)
            || name.StartsWith("tok", StringComparison.OrdinalIgnoreCase) && !name.StartsWith("tokens", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// The bundled stories260K model: next to the executable (the Host copies it there), else the first
    /// models/stories260K found walking up from the current directory (a repository checkout).
    /// </summary>
    public static string DefaultBundledPath()
    {
        string besideExe = System.IO.Path.Combine(AppContext.BaseDirectory, BundledRelativePath);
        if (Directory.Exists(besideExe)) return besideExe;
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            string candidate = System.IO.Path.Combine(dir.FullName, BundledRelativePath);
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new ModelLoadException($"the bundled model {BundledRelativePath} was not found next to the executable nor above {Directory.GetCurrentDirectory()}; pass --model DIR");
    }

    /// <summary>Reads just the architecture (no weights).</summary>
    public ModelConfig ReadConfig()
    {
        using var reader = OpenReader();
        return reader.Config;
    }

    internal ICheckpointReader OpenReader() => Format switch
    {
        ModelFormat.HuggingFace => new HuggingFaceCheckpoint(Path),
        ModelFormat.Gguf => new Checkpoints.Gguf.GgufCheckpoint(Path),
        _ => new Llama2cCheckpoint(CheckpointFile!),
    };
}
