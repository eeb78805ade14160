namespace ActorRing.Actors.Hosting;

/// <summary>
/// Reads the origin address out of Akka.Remote's association handshake, the first frame on every connection:
/// <c>AkkaProtocolMessage { instruction(2): AkkaControlMessage { commandType(1) = ASSOCIATE,
/// handshakeInfo(2): { origin(1): AddressData { system(1), hostname(2), port(3) } } } }</c> (WireFormats.proto).
/// A hand-written protobuf walk of those few fields, so the guard needs no generated code; anything else,
/// malformed or truncated, gives null.
/// </summary>
internal static class AkkaHandshake
{
    private const int AssociateCommand = 1;

    public static (string System, string Host, int Port)? Origin(ReadOnlySpan<byte> frame)
    {
        try
        {
            if (Field(frame, 2) is not { } instruction) return null;
            if (Varint(instruction, 1) != AssociateCommand) return null;
            if (Field(instruction, 2) is not { } info || Field(info, 1) is not { } origin) return null;
            if (Field(origin, 1) is not { } system || Field(origin, 2) is not { } host || Varint(origin, 3) is not { } port) return null;
            if (port is <= 0 or > 65535) return null;
            return (System.Text.Encoding.UTF8.GetString(system), System.Text.Encoding.UTF8.GetString(host), (int)port);
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>The bytes of length-delimited field <paramref name="number"/> (its first occurrence), or null.</summary>
    private static byte[]? Field(ReadOnlySpan<byte> message, int number)
    {
        int pos = 0;
        while (pos < message.Length)
        {
            ulong key = ReadVarint(message, ref pos);
            int wire = (int)(key & 7);
            ulong field = key >> 3;
            if (wire == 2)
            {
                ulong length = ReadVarint(message, ref pos);
                if (length > (ulong)(message.Length - pos)) throw new FormatException("truncated field");
                if (field == (ulong)number) return message.Slice(pos, (int)length).ToArray();
                pos += (int)length;
            }
            else Skip(message, ref pos, wire);
        }
        return null;
    }

    /// <summary>The value of varint field <paramref name="number"/>, or null.</summary>
    private static ulong? Varint(ReadOnlySpan<byte> message, int number)
    {
        int pos = 0;
        while (pos < message.Length)
        {
            ulong key = ReadVarint(message, ref pos);
            int wire = (int)(key & 7);
            if (wire == 0)
            {
                ulong value = ReadVarint(message, ref pos);
                if (key >> 3 == (ulong)number) return value;
            }
            else if (wire == 2)
            {
                ulong length = ReadVarint(message, ref pos);
                if (length > (ulong)(message.Length - pos)) throw new FormatException("truncated field");
                pos += (int)length;
            }
            else Skip(message, ref pos, wire);
        }
        return null;
    }

    private static void Skip(ReadOnlySpan<byte> message, ref int pos, int wire)
    {
        int size = wire switch
        {
            0 => -1,
            1 => 8,
            5 => 4,
            _ => throw new FormatException($"unsupported wire type {wire}"),
        };
        if (size < 0) ReadVarint(message, ref pos);
        else if (pos + size > message.Length) throw new FormatException("truncated field");
        else pos += size;
    }

    private static ulong ReadVarint(ReadOnlySpan<byte> message, ref int pos)
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (pos >= message.Length) throw new FormatException("truncated varint");
            byte b = message[pos++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return value;
        }
        throw new FormatException("varint too long");
    }
}
