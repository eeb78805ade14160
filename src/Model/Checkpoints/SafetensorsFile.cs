using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace ActorRing.Model.Checkpoints;

/// <summary>Element types of safetensors data that the model reads.</summary>
internal enum DiskDType { F32, BF16, F16 }

internal sealed record SafetensorsEntry(string Name, DiskDType DType, long[] Shape, long Begin, long End);

/// <summary>
/// One <c>.safetensors</c> file: an 8-byte little-endian header length, a JSON header naming each tensor's
/// dtype, shape and byte range, then the raw data. Only the header is parsed up front; tensor data is read
/// on demand, block by block, with positional reads so that a rank touches only its own byte ranges.
/// </summary>
internal sealed class SafetensorsFile : IDisposable
{
    private readonly SafeFileHandle _handle;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafetensorsEntry> _entries;

    public string Path { get; }
    public long BytesRead { get; private set; }
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries => _entries;

    public SafetensorsFile(string path)
    {
        Path = path;
        _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            long fileLength = RandomAccess.GetLength(_handle);
            Span<byte> lenBytes = stackalloc byte[8];
            if (fileLength < 8 || RandomAccess.Read(_handle, lenBytes, 0) != 8)
                throw new ModelLoadException($"{path}: too short to be a safetensors file");
            long headerLength = BinaryPrimitives.ReadInt64LittleEndian(lenBytes);
            if (headerLength <= 0 || headerLength > 100_000_000 || 8 + headerLength > fileLength)
                throw new ModelLoadException($"{path}: header length {headerLength} is not valid for a file of {fileLength} bytes");
            var header = new byte[headerLength];
            ReadExactly(header, 8);
            _dataStart = 8 + headerLength;
            _entries = ParseHeader(path, header, fileLength - _dataStart);
        }
        catch
        {
            _handle.Dispose();
            throw;
        }
    }

    private static Dictionary<string, SafetensorsEntry> ParseHeader(string path, byte[] header, long dataLength)
    {
        var entries = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
        using var doc = JsonDocument.Parse(header);
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__") continue;
            string dtypeText = p.Value.GetProperty("dtype").GetString() ?? "";
            DiskDType dtype = dtypeText switch
            {
                "F32" => DiskDType.F32,
                "BF16" => DiskDType.BF16,
                "F16" => DiskDType.F16,
                _ => throw new ModelLoadException($"{path}: tensor {p.Name} has dtype {dtypeText}; supported are F32, BF16 and F16"),
            };
            long[] shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offsets = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            long elements = shape.Aggregate(1L, (a, b) => a * b);
            long size = dtype == DiskDType.F32 ? 4 : 2;
            if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] > dataLength || offsets[1] - offsets[0] != elements * size)
                throw new ModelLoadException($"{path}: tensor {p.Name} has data_offsets [{string.Join(",", offsets)}] that do not match its shape [{string.Join(",", shape)}] and dtype {dtypeText}");
            entries[p.Name] = new SafetensorsEntry(p.Name, dtype, shape, offsets[0], offsets[1]);
        }
        return entries;
    }

    /// <summary>See <see cref="ICheckpointReader.ReadBlock"/>.</summary>
    public void ReadBlock(SafetensorsEntry e, long row0, long rows, long col0, long cols, Span<float> destination)
    {
        // A 3-D tensor [a, b, c] (granitemoe's experts, stacked) reads as the a·b × c matrix of its rows.
        long width = e.Shape.Length == 1 ? e.Shape[0] : e.Shape.Length is 2 or 3 ? e.Shape[^1]
            : throw new ModelLoadException($"{Path}: tensor {e.Name} has {e.Shape.Length} dimensions; expected 1, 2 or 3");
        long height = e.Shape.Length == 1 ? 1 : e.Shape.Length == 2 ? e.Shape[0] : e.Shape[0] * e.Shape[1];
        if (row0 < 0 || col0 < 0 || row0 + rows > height || col0 + cols > width || destination.Length != rows * cols)
            throw new InvalidOperationException($"block [{row0}+{rows}, {col0}+{cols}] is outside tensor {e.Name} [{height}, {width}]");
        int esize = e.DType == DiskDType.F32 ? 4 : 2;
        long baseOffset = _dataStart + e.Begin;
        if (cols == width)
        {
            // Whole rows are one contiguous byte range: read it in one go (in pieces below 2 GiB).
            ReadConverted(e.DType, baseOffset + row0 * width * esize, destination);
            return;
        }
        // A column block (row-parallel weights) is one short range per row.
        for (long r = 0; r < rows; r++)
        {
            ReadConverted(e.DType, baseOffset + ((row0 + r) * width + col0) * esize, destination.Slice((int)(r * cols), (int)cols));
        }
    }

    private void ReadConverted(DiskDType dtype, long offset, Span<float> destination)
    {
        if (dtype == DiskDType.F32)
        {
            ReadExactly(MemoryMarshal.AsBytes(destination), offset);
            BytesRead += destination.Length * 4L;
            return;
        }
        const int chunk = 1 << 20;
        ushort[] buffer = ArrayPool<ushort>.Shared.Rent(Math.Min(chunk, destination.Length));
        try
        {
            for (int done = 0; done < destination.Length;)
            {
                int n = Math.Min(chunk, destination.Length - done);
                Span<ushort> raw = buffer.AsSpan(0, n);
                ReadExactly(MemoryMarshal.AsBytes(raw), offset + (long)done * 2);
                BytesRead += n * 2L;
                Span<float> dst = destination.Slice(done, n);
                if (dtype == DiskDType.BF16)
                {
                    for (int i = 0; i < n; i++) dst[i] = BitConverter.UInt32BitsToSingle((uint)raw[i] << 16);
                }
                else
                {
                    for (int i = 0; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(raw[i]);
                }
                done += n;
            }
        }
        finally
        {
            ArrayPool<ushort>.Shared.Return(buffer);
        }
    }

    private void ReadExactly(Span<byte> destination, long offset)
    {
        while (destination.Length > 0)
        {
            int n = RandomAccess.Read(_handle, destination, offset);
            if (n <= 0) throw new ModelLoadException($"{Path}: unexpected end of file at byte {offset}");
            destination = destination[n..];
            offset += n;
        }
    }

    public void Dispose() => _handle.Dispose();
}
