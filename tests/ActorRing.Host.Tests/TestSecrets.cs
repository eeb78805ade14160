namespace ActorRing.Host.Tests;

/// <summary>Cluster secrets for tests: serve refuses one shorter than 16 bytes unless told it is a test.</summary>
internal static class TestSecrets
{
    public const string Cluster = "test-cluster-secret-0123456789abcdef";
    public const string Other = "another-cluster-secret-fedcba9876543210";
}
