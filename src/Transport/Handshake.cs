using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace ActorRing.Transport;

/// <summary>
/// Mutual authentication of one ring socket. Both sides send a hello (magic, version, world size, rank,
/// 32-byte nonce). The dialling side (the left neighbour) proves the secret first with
/// HMAC-SHA256(secret, "C" | both hellos); only then does the listening side prove it with "S" | both hellos,
/// so a stray that does not know the secret never receives a MAC it could attack offline from the listener.
/// Role tags stop reflection; fresh nonces on both sides stop replay. The secret itself never crosses the wire.
/// </summary>
internal static class Handshake
{
    public const uint Magic = 0x41524E47; // "ARNG"
    public const ushort Version = 1;
    private const int HelloSize = 48;
    private const int NonceSize = 32;
    private const byte ProofTag = (byte)'P', RefuseTag = (byte)'R', AcceptTag = (byte)'A';
    private const byte RoleDialer = (byte)'C', RoleListener = (byte)'S';

    /// <summary>Thrown when the peer is not the expected neighbour or failed the proof. Message = reason.</summary>
    public sealed class RefusedException(string message, bool byPeer) : Exception(message)
    {
        public bool ByPeer { get; } = byPeer;
    }

    /// <summary>Runs the handshake on a connected socket; returns normally only when both sides accepted.</summary>
    /// <param name="dialer">True on the socket this rank opened to its right neighbour.</param>
    /// <param name="expectedPeerRank">The right neighbour (when dialling) or the left one (when listening).</param>
    public static async Task RunAsync(Socket socket, bool dialer, int rank, int worldSize, int expectedPeerRank,
        byte[] secret, CancellationToken ct)
    {
        var mine = new byte[HelloSize];
        BinaryPrimitives.WriteUInt32BigEndian(mine, Magic);
        BinaryPrimitives.WriteUInt16BigEndian(mine.AsSpan(4), Version);
        mine[6] = dialer ? RoleDialer : RoleListener;
        BinaryPrimitives.WriteInt32BigEndian(mine.AsSpan(8), worldSize);
        BinaryPrimitives.WriteInt32BigEndian(mine.AsSpan(12), rank);
        RandomNumberGenerator.Fill(mine.AsSpan(16, NonceSize));
        await SendAsync(socket, mine, ct);

        var theirs = new byte[HelloSize];
        await ReceiveExactAsync(socket, theirs, ct);
        string? problem = CheckHello(theirs, dialer, worldSize, expectedPeerRank);
        if (problem is not null)
        {
            await TrySendRefusalAsync(socket, problem, ct);
            throw new RefusedException(problem, byPeer: false);
        }

        byte[] dialerHello = dialer ? mine : theirs, listenerHello = dialer ? theirs : mine;
        if (dialer)
        {
            await SendProofAsync(socket, Mac(secret, RoleDialer, dialerHello, listenerHello), ct);
            await ExpectProofAsync(socket, secret, RoleListener, dialerHello, listenerHello, ct);
            await SendAsync(socket, new[] { AcceptTag }, ct);
        }
        else
        {
            await ExpectProofAsync(socket, secret, RoleDialer, dialerHello, listenerHello, ct);
            await SendProofAsync(socket, Mac(secret, RoleListener, dialerHello, listenerHello), ct);
            // The dialer's final accept tells us it verified our proof: only then is the slot taken.
            byte[] tag = new byte[1];
            await ReceiveExactAsync(socket, tag, ct);
            if (tag[0] == RefuseTag) throw new RefusedException(await ReadReasonAsync(socket, ct), byPeer: true);
            if (tag[0] != AcceptTag) throw new RefusedException($"unexpected handshake byte 0x{tag[0]:X2}", byPeer: false);
        }
    }

    private static string? CheckHello(byte[] h, bool dialer, int worldSize, int expectedPeerRank)
    {
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(h);
        if (magic != Magic) return $"not an ActorRing ring peer (magic 0x{magic:X8}, expected 0x{Magic:X8})";
        ushort version = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(4));
        if (version != Version) return $"protocol version {version}, expected {Version}";
        byte role = h[6];
        byte expectedRole = dialer ? RoleListener : RoleDialer;
        if (role != expectedRole) return $"peer role '{(char)role}', expected '{(char)expectedRole}'";
        int ws = BinaryPrimitives.ReadInt32BigEndian(h.AsSpan(8));
        if (ws != worldSize) return $"peer has world_size {ws}, expected {worldSize}";
        int peerRank = BinaryPrimitives.ReadInt32BigEndian(h.AsSpan(12));
        if (peerRank != expectedPeerRank)
            return $"peer is rank {peerRank}, expected rank {expectedPeerRank} as the {(dialer ? "right" : "left")} neighbour";
        return null;
    }

    private static byte[] Mac(byte[] secret, byte role, byte[] dialerHello, byte[] listenerHello)
    {
        var msg = new byte[1 + 2 * HelloSize];
        msg[0] = role;
        dialerHello.CopyTo(msg, 1);
        listenerHello.CopyTo(msg, 1 + HelloSize);
        return HMACSHA256.HashData(secret, msg);
    }

    private static async Task SendProofAsync(Socket socket, byte[] mac, CancellationToken ct)
    {
        var msg = new byte[1 + mac.Length];
        msg[0] = ProofTag;
        mac.CopyTo(msg, 1);
        await SendAsync(socket, msg, ct);
    }

    private static async Task ExpectProofAsync(Socket socket, byte[] secret, byte role, byte[] dialerHello,
        byte[] listenerHello, CancellationToken ct)
    {
        byte[] tag = new byte[1];
        await ReceiveExactAsync(socket, tag, ct);
        if (tag[0] == RefuseTag) throw new RefusedException(await ReadReasonAsync(socket, ct), byPeer: true);
        if (tag[0] != ProofTag)
        {
            await TrySendRefusalAsync(socket, "malformed handshake", ct);
            throw new RefusedException($"unexpected handshake byte 0x{tag[0]:X2}", byPeer: false);
        }
        byte[] proof = new byte[32];
        await ReceiveExactAsync(socket, proof, ct);
        if (!CryptographicOperations.FixedTimeEquals(proof, Mac(secret, role, dialerHello, listenerHello)))
        {
            const string reason = "wrong cluster secret (HMAC proof does not verify)";
            await TrySendRefusalAsync(socket, reason, ct);
            throw new RefusedException(reason, byPeer: false);
        }
    }

    private static async Task TrySendRefusalAsync(Socket socket, string reason, CancellationToken ct)
    {
        byte[] text = Encoding.UTF8.GetBytes(reason.Length > 200 ? reason[..200] : reason);
        var msg = new byte[3 + text.Length];
        msg[0] = RefuseTag;
        BinaryPrimitives.WriteUInt16BigEndian(msg.AsSpan(1), (ushort)text.Length);
        text.CopyTo(msg, 3);
        try
        {
            await SendAsync(socket, msg, ct);
            // Close gracefully and wait briefly for the peer to close too: closing with its unread bytes still
            // queued would send a reset, which discards our refusal (and its reason) on the peer's side.
            socket.Shutdown(SocketShutdown.Send);
            using var linger = CancellationTokenSource.CreateLinkedTokenSource(ct);
            linger.CancelAfter(TimeSpan.FromSeconds(1));
            var sink = new byte[256];
            while (await socket.ReceiveAsync(sink, SocketFlags.None, linger.Token) > 0) { }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // The peer may already be gone; the refusal is still logged on this side.
        }
    }

    private static async Task<string> ReadReasonAsync(Socket socket, CancellationToken ct)
    {
        byte[] len = new byte[2];
        await ReceiveExactAsync(socket, len, ct);
        // The length field is 16 bits, so a hostile peer can make us allocate at most 64 KiB here.
        byte[] text = new byte[BinaryPrimitives.ReadUInt16BigEndian(len)];
        await ReceiveExactAsync(socket, text, ct);
        return "refused by peer: " + Encoding.UTF8.GetString(text);
    }

    private static async Task SendAsync(Socket socket, byte[] data, CancellationToken ct)
    {
        int sent = 0;
        while (sent < data.Length) sent += await socket.SendAsync(data.AsMemory(sent), SocketFlags.None, ct);
    }

    private static async Task ReceiveExactAsync(Socket socket, byte[] buffer, CancellationToken ct)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None, ct);
            if (n == 0) throw new SocketException((int)SocketError.ConnectionReset);
            got += n;
        }
    }
}
