using System.Text;
using System.Text.Json;

namespace ActorRing.Model.Tests.Support;

/// <summary>Writes safetensors files for synthetic test models (header JSON, 8-byte aligned, then raw data).</summary>
internal static class SafetensorsWriter
{
    public sealed record Entry(string DType, long[] Shape, float[] Values);

    /// <summary>The value each element has once stored as <paramref name="dtype"/> (what a reader must see).</summary>
    public static float RoundTo(string dtype, float v) => dtype switch
    {
        "F32" => v,
        "F16" => (float)(Half)v,
        "BF16" => BitConverter.UInt32BitsToSingle(Bf16Bits(v) << 16),
        _ => throw new ArgumentException(dtype),
    };

    private static uint Bf16Bits(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16;
    }

    public static void Write(string path, IReadOnlyDictionary<string, Entry> tensors)
    {
        var header = new Dictionary<string, object>();
        long offset = 0;
        var order = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
        foreach (var name in order)
        {
            var e = tensors[name];
            long size = e.Values.Length * (e.DType == "F32" ? 4 : 2);
            header[name] = new { dtype = e.DType, shape = e.Shape, data_offsets = new[] { offset, offset + size } };
            offset += size;
        }
        header["__metadata__"] = new { format = "pt" };
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8;
        using var f = File.Create(path);
        using var w = new BinaryWriter(f);
        w.Write((long)(json.Length + pad));
        w.Write(json);
        for (int i = 0; i < pad; i++) w.Write((byte)' ');
        foreach (var name in order)
        {
            var e = tensors[name];
            foreach (float v in e.Values)
            {
                switch (e.DType)
                {
                    case "F32": w.Write(v); break;
                    case "F16": w.Write(BitConverter.HalfToUInt16Bits((Half)v)); break;
                    case "BF16": w.Write((ushort)Bf16Bits(v)); break;
                }
            }
        }
    }
}
