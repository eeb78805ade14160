using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace ActorRing.Actors.Security;

/// <summary>
/// Challenge-response proofs of the cluster secret for control-plane registration. The secret never travels;
/// each side sends HMAC-SHA256 over fresh nonces and the identity fields it claims, so a proof cannot be
/// replayed for another nonce, rank, world size or model.
/// </summary>
public static class RegistrationProof
{
    public static string NewNonce() => Convert.ToHexString(RandomNumberGenerator.GetBytes(16));

    /// <summary>The coordinator's proof, sent only after the worker's own proof verified (lets the worker refuse a
    /// rogue coordinator); bound to the worker's nonce, the rank and the world size it accepts.</summary>
    public static string Coordinator(byte[] secret, string clientNonce, string serverNonce, int rank, int worldSize) =>
        Mac(secret, string.Create(CultureInfo.InvariantCulture, $"actorring-coordinator-v2|{clientNonce}|{serverNonce}|{rank}|{worldSize}"));

    public static string Worker(byte[] secret, Register r) => Worker(
        secret, r.ClientNonce, r.ServerNonce, r.Rank, r.WorldSize, r.ProtocolVersion, r.ModelFingerprint);

    public static string Worker(byte[] secret, string clientNonce, string serverNonce, int rank, int worldSize,
        int protocolVersion, string fingerprint) =>
        Mac(secret, string.Create(CultureInfo.InvariantCulture,
            $"actorring-worker-v1|{clientNonce}|{serverNonce}|{rank}|{worldSize}|{protocolVersion}|{fingerprint}"));

    public static bool Matches(string expectedHex, string actualHex)
    {
        try
        {
            return CryptographicOperations.FixedTimeEquals(Convert.FromHexString(expectedHex), Convert.FromHexString(actualHex));
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private static string Mac(byte[] secret, string text) =>
        Convert.ToHexString(HMACSHA256.HashData(secret, Encoding.UTF8.GetBytes(text)));
}
