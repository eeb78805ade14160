namespace ActorRing.Model.Batching;

/// <summary>
/// A <see cref="StepPlan"/> as a flat array of int32, the form the ring broadcasts. Layout: magic, version,
/// step (low, high), flags, sequence count, then per sequence: id, start position, token count, block count,
/// needs-logits, tokens…, blocks…. Decoding checks every count against the array's length, so a corrupt
/// frame is an error, never a wrong plan.
/// </summary>
public static class StepPlanCodec
{
    public const int Magic = 0x50_4C_41_4E; // "PLAN"
    private const int Version = 1, HeaderInts = 6, PerSequenceInts = 5;

    public static int[] Encode(StepPlan plan)
    {
        int length = HeaderInts;
        foreach (var s in plan.Sequences) length += PerSequenceInts + s.Tokens.Length + s.BlockTable.Length;
        var data = new int[length];
        data[0] = Magic;
        data[1] = Version;
        data[2] = (int)(plan.Step & 0xFFFF_FFFF);
        data[3] = (int)(plan.Step >> 32);
        data[4] = plan.Stop ? 1 : 0;
        data[5] = plan.Sequences.Count;
        int at = HeaderInts;
        foreach (var s in plan.Sequences)
        {
            data[at++] = s.SequenceId;
            data[at++] = s.StartPosition;
            data[at++] = s.Tokens.Length;
            data[at++] = s.BlockTable.Length;
            data[at++] = s.NeedsLogits ? 1 : 0;
            s.Tokens.CopyTo(data, at);
            at += s.Tokens.Length;
            s.BlockTable.CopyTo(data, at);
            at += s.BlockTable.Length;
        }
        return data;
    }

    /// <exception cref="FormatException">The array is not a well-formed plan.</exception>
    public static StepPlan Decode(ReadOnlySpan<int> data)
    {
        if (data.Length < HeaderInts || data[0] != Magic)
            throw new FormatException($"not a step plan: {data.Length} ints, first 0x{(data.Length > 0 ? data[0] : 0):X8} (expected magic 0x{Magic:X8})");
        if (data[1] != Version) throw new FormatException($"step plan version {data[1]}, expected {Version}");
        long step = (uint)data[2] | ((long)data[3] << 32);
        int count = data[5];
        if (count < 0) throw new FormatException($"step plan {step}: negative sequence count {count}");
        var sequences = new SequenceStep[count];
        int at = HeaderInts;
        for (int i = 0; i < count; i++)
        {
            if (at + PerSequenceInts > data.Length) throw new FormatException($"step plan {step}: truncated at sequence {i}");
            int id = data[at], start = data[at + 1], tokens = data[at + 2], blocks = data[at + 3];
            bool logits = data[at + 4] != 0;
            at += PerSequenceInts;
            if (tokens < 0 || blocks < 0 || (long)at + tokens + blocks > data.Length)
                throw new FormatException($"step plan {step}: sequence {i} claims {tokens} tokens and {blocks} blocks, beyond the frame's {data.Length} ints");
            var t = data.Slice(at, tokens).ToArray();
            at += tokens;
            var b = data.Slice(at, blocks).ToArray();
            at += blocks;
            sequences[i] = new SequenceStep(id, start, t, b, logits);
        }
        if (at != data.Length) throw new FormatException($"step plan {step}: {data.Length - at} ints left over");
        return new StepPlan(step, sequences, data[4] != 0);
    }
}
