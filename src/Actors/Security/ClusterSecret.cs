using System.Security.Cryptography;

namespace ActorRing.Actors.Security;

/// <summary>
/// Rules for ACTORRING_SECRET. Neither plane ever sends the secret, but a peer that sees one HMAC proof (a
/// rogue coordinator a worker was pointed at, or anyone who can read the ring's first bytes) can test guesses
/// offline at billions per second. 16 random bytes put that out of reach; a word or a short phrase does not.
/// </summary>
public static class ClusterSecret
{
    public const int MinimumBytes = 16;

    /// <summary>A fresh secret: 32 random bytes as 64 hex digits (what <c>actorring secret</c> prints).</summary>
    public static string NewHex() => Convert.ToHexString(RandomNumberGenerator.GetBytes(32)).ToLowerInvariant();

    /// <summary>Null when <paramref name="secret"/> is long enough, else the error, naming the length and the fix.</summary>
    public static string? TooShort(byte[] secret, string variable) => secret.Length >= MinimumBytes ? null :
        $"{variable} is {secret.Length} byte(s) long; it must be at least {MinimumBytes} bytes, because a short secret can be guessed offline from one proof. " +
        $"Make one with 'actorring secret' (or: openssl rand -hex 32) and give every rank the same value, or pass --insecure-short-secret for a test";
}
