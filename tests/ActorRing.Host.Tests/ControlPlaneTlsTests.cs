using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using ActorRing.Transport;

namespace ActorRing.Host.Tests;

/// <summary>
/// <c>serve --tls-cert</c> with real processes on loopback: a TLS cluster generates what a plain one does, a rank
/// without the certificate (or with another one) is refused at rank 0's control port with one clear line, and a
/// certificate that cannot be used stops the rank at start-up with an error naming the file and the fix.
/// </summary>
public sealed class ControlPlaneTlsTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);
    private const string Password = "pfx-password";
    private readonly string _dir = Directory.CreateTempSubdirectory("actorring-tls-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A self-signed certificate with its key, as PKCS#12 (what the README's openssl commands make).</summary>
    private string MakeCertificate(string name, string? password)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        string path = Path.Combine(_dir, $"{name}.pfx");
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pkcs12, password));
        return path;
    }

    private (string Rank0, string Rank1) RingFiles()
    {
        var configs = RingConfig.ForLoopback(2);
        for (int r = 0; r < 2; r++) File.WriteAllText(Path.Combine(_dir, $"ring_{r}.json"), configs[r].ToJson());
        return (Path.Combine(_dir, "ring_0.json"), Path.Combine(_dir, "ring_1.json"));
    }

    private static Dictionary<string, string> Env(string ring, string? tlsPassword = null)
    {
        var env = new Dictionary<string, string> { ["RING_CONFIG"] = ring, ["ACTORRING_SECRET"] = TestSecrets.Cluster };
        if (tlsPassword is not null) env["ACTORRING_TLS_PASSWORD"] = tlsPassword;
        return env;
    }

    private static int[] PublishedGreedyIds() => JsonSerializer.Deserialize<int[]>(File.ReadAllText(
        Path.Combine(AppContext.BaseDirectory, "models", "stories260K", "expected", "greedy_bos_256.ids.json")))!;

    [Fact]
    public async Task A_TLS_cluster_generates_the_same_tokens_as_a_plain_one()
    {
        string certificate = MakeCertificate("cluster", Password);
        var (ring0, ring1) = RingFiles();
        // The password from the environment on one rank and from the option on the other: both are supported.
        using var worker = new RankProcess(["serve", "--context", "512", "--tls-cert", certificate], Env(ring1, Password));
        using var master = new RankProcess(["serve", "--context", "512", "--tls-cert", certificate, "--tls-cert-password", Password,
            "--prompt-ids", "1", "--max-tokens", "24", "--json"], Env(ring0));
        int code = await master.WaitAsync(Deadline);
        Assert.True(code == 0, $"rank 0 exited with {code}\n{master.Stderr}\nrank 1:\n{worker.Stderr}");
        var result = JsonDocument.Parse(master.Stdout).RootElement;
        Assert.Equal(PublishedGreedyIds()[..24], result.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        // The worker reached the coordinator through Akka's TLS transport.
        Assert.Contains("rank 1/2: registered with the coordinator at akka.ssl.tcp://actorring@127.0.0.1:", worker.Stderr);
        Assert.Equal(0, await worker.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    [Theory]
    [InlineData(false, "it does not speak TLS, and this rank's control plane requires it; start every rank with the same --tls-cert")]
    [InlineData(true, "TLS handshake failed: its certificate 'CN=stranger'")]
    public async Task A_rank_without_the_clusters_certificate_is_refused_with_one_clear_line(bool otherCertificate, string refusal)
    {
        string certificate = MakeCertificate("cluster", Password);
        var (ring0, ring1) = RingFiles();
        string[] workerTls = otherCertificate ? ["--tls-cert", MakeCertificate("stranger", null)] : [];
        using var master = new RankProcess(["serve", "--context", "512", "--http-port", "0", "--tls-cert", certificate], Env(ring0, Password));
        using var worker = new RankProcess(["serve", "--context", "512", .. workerTls], Env(ring1));
        await master.WaitForLogAsync($"control port: closed the connection from 127.0.0.1:", Deadline);
        await master.WaitForLogAsync(refusal, TimeSpan.FromSeconds(5));
        // Refused at the door: Akka never saw the connection, no stack trace, and the worker never registered.
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.DoesNotContain("   at ", master.Stderr);
        Assert.DoesNotContain("Akka.Remote.Transport.DotNetty", master.Stderr);
        Assert.DoesNotContain("registered with the coordinator", worker.Stderr);
        Assert.Contains("waiting for ranks: 1/2 registered (missing 1)", master.Stderr);
        Assert.False(master.HasExited);
    }

    [Fact]
    public async Task A_certificate_that_cannot_be_used_stops_the_rank_at_start_up_naming_the_file_and_the_fix()
    {
        string certificate = MakeCertificate("cluster", Password);
        var (ring0, _) = RingFiles();
        string missing = Path.Combine(_dir, "missing.pfx");
        string notPfx = Path.Combine(_dir, "cert.pem");
        File.WriteAllText(notPfx, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
        (string[] Args, string? EnvPassword, string Error)[] cases =
        [
            (["--tls-cert", missing], null, $"error: --tls-cert {missing}: no such file; make one as README \"TLS on the control plane\" shows"),
            (["--tls-cert", _dir], null, $"error: --tls-cert {_dir} is a directory; give the PKCS#12 file (.pfx)"),
            (["--tls-cert", certificate, "--tls-cert-password", "wrong"], null, $"error: --tls-cert {certificate} could not be read as a PKCS#12 (.pfx) file with its private key"),
            (["--tls-cert", certificate], null, "if it has a password, give it with --tls-cert-password or ACTORRING_TLS_PASSWORD"),
            (["--tls-cert", notPfx], Password, "a PEM certificate must first be bundled with its key: openssl pkcs12 -export"),
            (["--tls-cert-password", Password], null, "error: --tls-cert-password is the password of --tls-cert FILE.pfx; give --tls-cert too, or drop it"),
        ];
        foreach (var (args, envPassword, error) in cases)
        {
            using var rank = new RankProcess(["serve", .. args], Env(ring0, envPassword));
            Assert.Equal(2, await rank.WaitAsync(Deadline));
            Assert.Contains(error, rank.Stderr);
            Assert.DoesNotContain("   at ", rank.Stderr);
        }
    }
}
