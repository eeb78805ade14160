using ActorRing.Model.Quantization;

namespace ActorRing.Model.Checkpoints;

/// <summary>
/// Random access to the weights of one checkpoint, by Hugging Face tensor name, in the Hugging Face layout
/// (rotate-half RoPE order for q/k rows). A reader returns just the requested block of a 2-D tensor and
/// reads only its bytes from the file, so a rank never holds a full tensor it would then cut.
/// </summary>
internal interface ICheckpointReader : IDisposable
{
    ModelConfig Config { get; }

    /// <summary>Short description for error messages, e.g. the file path.</summary>
    string Source { get; }

    bool Contains(string name);

    /// <summary>Tensor bytes read from storage so far (headers excluded): what proves a rank read only its slices.</summary>
    long BytesRead { get; }

    /// <summary>Shape on disk (1-D tensors have one entry).</summary>
    long[] Shape(string name);

    /// <summary>
    /// Writes rows [row0, row0+rows) × columns [col0, col0+cols) of tensor <paramref name="name"/>, converted to
    /// float32, row-major into <paramref name="destination"/> (rows·cols elements). A 1-D tensor is one row.
    /// </summary>
    void ReadBlock(string name, long row0, long rows, long col0, long cols, Span<float> destination);

    /// <summary>
    /// Whether Gemma's RMSNorm weights are stored with its 1 already added (llama.cpp's converter writes 1 + w, so
    /// its norm is a plain multiply); Hugging Face checkpoints store w, and the loader adds the 1.
    /// </summary>
    bool GemmaNormsIncludeOne => false;

    /// <summary>The type a tensor is stored in, as far as loading cares: block-quantized (GGUF) or float.</summary>
    GgmlType StoredType(string name) => GgmlType.F32;

    /// <summary>Values per block of the stored type (1 for floats): a row-parallel split must not cut a block.</summary>
    int ColumnBlock(string name) => 1;

    /// <summary>
    /// Raw stored bytes of a block of a block-quantized tensor (see <see cref="StoredType"/>), rows after each
    /// other in ggml's row layout; only readers of quantized files implement it.
    /// </summary>
    void ReadRaw(string name, long row0, long rows, long col0, long cols, Span<byte> destination) =>
        throw new NotSupportedException($"{Source} holds no block-quantized tensors");
}
