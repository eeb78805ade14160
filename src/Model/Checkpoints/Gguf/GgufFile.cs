using System.Text;
using Microsoft.Win32.SafeHandles;
using ActorRing.Model.Quantization;

namespace ActorRing.Model.Checkpoints.Gguf;

/// <summary>One tensor's entry in a GGUF file: dims in ggml order (ne[0], the row length, first), type, and where its data starts.</summary>
internal sealed record GgufTensor(string Name, long[] Dims, GgmlType Type, long Offset, GgufFile File);

/// <summary>
/// A GGUF file (docs/gguf.md of ggml): the header, the metadata key-values and the tensor infos are parsed at
/// open; tensor data is read on demand by byte range, so a rank reads only its own slices. Versions 2 and 3
/// (little-endian) are read.
/// </summary>
internal sealed class GgufFile : IDisposable
{
    private const uint Magic = 0x46554747; // "GGUF"
    private readonly SafeFileHandle _handle;
    private long _bytesRead;

    public string Path { get; }
    public uint Version { get; }
    public IReadOnlyDictionary<string, object> Metadata { get; }
    public IReadOnlyDictionary<string, GgufTensor> Tensors { get; }
    public long DataOffset { get; }
    public long Length { get; }
    public long BytesRead => Interlocked.Read(ref _bytesRead);

    public GgufFile(string path)
    {
        Path = path;
        _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            Length = RandomAccess.GetLength(_handle);
            // The header through a stream of its own (disposing a stream over _handle would close it).
            using var stream = new BufferedStream(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1), 1 << 20);
            var r = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
            try
            {
                if (r.ReadUInt32() != Magic) throw Bad("does not start with the GGUF magic; is this a GGUF file?");
                Version = r.ReadUInt32();
                if (Version is not (2 or 3)) throw Bad($"is GGUF version {Version}; versions 2 and 3 are supported");
                long tensorCount = Count(r.ReadUInt64(), 1 << 20, "tensor count");
                long kvCount = Count(r.ReadUInt64(), 1 << 20, "metadata count");
                var metadata = new Dictionary<string, object>(StringComparer.Ordinal);
                for (long i = 0; i < kvCount; i++)
                {
                    string key = ReadString(r);
                    metadata[key] = ReadValue(r, r.ReadUInt32(), key);
                }
                Metadata = metadata;
                var infos = new List<(string Name, long[] Dims, GgmlType Type, long Offset)>();
                for (long i = 0; i < tensorCount; i++)
                {
                    string name = ReadString(r);
                    uint dims = r.ReadUInt32();
                    if (dims is 0 or > 4) throw Bad($"tensor {name} has {dims} dimensions (1 to 4 are valid)");
                    var ne = new long[dims];
                    for (int d = 0; d < dims; d++) ne[d] = Count(r.ReadUInt64(), long.MaxValue / 4, $"tensor {name} dimension {d}");
                    infos.Add((name, ne, (GgmlType)r.ReadUInt32(), Count(r.ReadUInt64(), long.MaxValue / 4, $"tensor {name} offset")));
                }
                long alignment = metadata.TryGetValue("general.alignment", out var a) ? Convert.ToInt64(a, System.Globalization.CultureInfo.InvariantCulture) : 32;
                if (alignment <= 0 || (alignment & (alignment - 1)) != 0) throw Bad($"general.alignment {alignment} is not a power of two");
                long headerEnd = stream.Position;
                DataOffset = (headerEnd + alignment - 1) / alignment * alignment;
                Tensors = infos.ToDictionary(t => t.Name, t => new GgufTensor(t.Name, t.Dims, t.Type, DataOffset + t.Offset, this), StringComparer.Ordinal);
            }
            catch (EndOfStreamException)
            {
                throw Bad("ends inside its header");
            }
        }
        catch
        {
            _handle.Dispose();
            throw;
        }
    }

    private ModelLoadException Bad(string what) => new($"{Path}: {what}");

    private long Count(ulong value, long max, string what) =>
        value <= (ulong)max ? (long)value : throw Bad($"{what} {value} is beyond any real model (corrupt header?)");

    private string ReadString(BinaryReader r)
    {
        long length = Count(r.ReadUInt64(), 1 << 24, "string length");
        return Encoding.UTF8.GetString(r.ReadBytes((int)length));
    }

    private object ReadValue(BinaryReader r, uint type, string key) => type switch
    {
        0 => (long)r.ReadByte(),
        1 => (long)r.ReadSByte(),
        2 => (long)r.ReadUInt16(),
        3 => (long)r.ReadInt16(),
        4 => (long)r.ReadUInt32(),
        5 => (long)r.ReadInt32(),
        6 => (double)r.ReadSingle(),
        7 => r.ReadByte() != 0,
        8 => ReadString(r),
        9 => ReadArray(r, key),
        10 => (long)r.ReadUInt64(),
        11 => r.ReadInt64(),
        12 => r.ReadDouble(),
        _ => throw Bad($"metadata {key} has value type {type}, which GGUF does not define"),
    };

    /// <summary>Arrays of strings, floats and integers as typed arrays (vocabularies hold 100k+ entries); anything else boxed.</summary>
    private object ReadArray(BinaryReader r, string key)
    {
        uint type = r.ReadUInt32();
        int n = (int)Count(r.ReadUInt64(), 1 << 26, $"metadata {key} array length");
        switch (type)
        {
            case 8:
                var strings = new string[n];
                for (int i = 0; i < n; i++) strings[i] = ReadString(r);
                return strings;
            case 6:
                var floats = new float[n];
                for (int i = 0; i < n; i++) floats[i] = r.ReadSingle();
                return floats;
            case 4 or 5:
                var ints = new int[n];
                for (int i = 0; i < n; i++) ints[i] = type == 5 ? r.ReadInt32() : checked((int)r.ReadUInt32());
                return ints;
            default:
                var values = new object[n];
                for (int i = 0; i < n; i++) values[i] = ReadValue(r, type, key);
                return values;
        }
    }

    /// <summary>Reads exactly destination.Length bytes at an absolute file offset.</summary>
    public void Read(long offset, Span<byte> destination)
    {
        if (offset < DataOffset || offset + destination.Length > Length)
            throw new ModelLoadException($"{Path}: tensor data [{offset}, {offset + destination.Length}) lies outside the file's data section (file has {Length} bytes); the file is truncated or corrupt");
        while (destination.Length > 0)
        {
            int n = RandomAccess.Read(_handle, destination, offset);
            if (n <= 0) throw new ModelLoadException($"{Path}: unexpected end of file at byte {offset}");
            Interlocked.Add(ref _bytesRead, n);
            destination = destination[n..];
            offset += n;
        }
    }

    public void Dispose() => _handle.Dispose();
}
