using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Remote.Transport.DotNetty;

namespace ActorRing.Actors.Security;

/// <summary>Why a control-plane certificate could not be used; the message names the file and the fix.</summary>
public sealed class ControlPlaneTlsException(string message) : Exception(message);

/// <summary>
/// TLS for the control plane (Akka.Remote), with one certificate for the whole cluster, as with the cluster secret:
/// every rank holds the same PKCS#12 file, presents it on every connection, in both directions (mutual TLS), and
/// accepts exactly that certificate from the other side (pinned by its SHA-256 hash, so a self-signed certificate
/// needs no certificate authority and a certificate from a public CA is not enough).
/// <para>
/// On the wire a rank's control port is <see cref="Hosting.ControlPortGuard"/>, which ends the TLS session, applies
/// its limits to the Akka frames inside, and forwards them over a second TLS session to Akka.Remote on loopback.
/// Akka's own outbound connections use TLS directly. So every control message is encrypted between hosts, and a
/// peer without the certificate's private key is cut off in the TLS handshake, before Akka reads a byte from it.
/// </para>
/// </summary>
public sealed class ControlPlaneTls
{
    /// <summary>Where the password comes from when <c>--tls-cert-password</c> is not given.</summary>
    public const string PasswordEnvironmentVariable = "ACTORRING_TLS_PASSWORD";

    /// <summary>The name each side gives as the server name; the pin, not the name, decides.</summary>
    public const string ServerName = "actorring";

    private readonly byte[] _pin;

    private ControlPlaneTls(X509Certificate2 certificate, string source)
    {
        Certificate = certificate;
        Source = source;
        _pin = certificate.GetCertHash(HashAlgorithmName.SHA256);
    }

    public X509Certificate2 Certificate { get; }

    /// <summary>The file the certificate came from (for messages).</summary>
    public string Source { get; }

    /// <summary>The pin, as <c>openssl x509 -fingerprint -sha256</c> prints it without colons.</summary>
    public string Fingerprint => Convert.ToHexString(_pin);

    /// <summary>Loads a PKCS#12 (.pfx/.p12) file holding the certificate and its private key.</summary>
    /// <param name="option">The option that named the file, for messages (e.g. "--tls-cert").</param>
    public static ControlPlaneTls Load(string path, string? password, string option = "--tls-cert")
    {
        if (Directory.Exists(path))
            throw new ControlPlaneTlsException($"{option} {path} is a directory; give the PKCS#12 file (.pfx) that holds the cluster's certificate and key");
        if (!File.Exists(path))
            throw new ControlPlaneTlsException($"{option} {path}: no such file; make one as README \"TLS on the control plane\" shows (openssl req ... && openssl pkcs12 -export ...)");
        X509Certificate2 certificate;
        try
        {
            certificate = X509CertificateLoader.LoadPkcs12FromFile(path, password, X509KeyStorageFlags.EphemeralKeySet);
        }
        catch (CryptographicException e)
        {
            string hint = password is null
                ? $"if it has a password, give it with --tls-cert-password or {PasswordEnvironmentVariable}"
                : "is the password right?";
            throw new ControlPlaneTlsException(
                $"{option} {path} could not be read as a PKCS#12 (.pfx) file with its private key: {e.Message.TrimEnd('.')}; {hint} (a PEM certificate must first be bundled with its key: openssl pkcs12 -export -in cert.pem -inkey key.pem -out cluster.pfx)");
        }
        if (!certificate.HasPrivateKey)
        {
            certificate.Dispose();
            throw new ControlPlaneTlsException($"{option} {path} holds a certificate without its private key; export it with the key (openssl pkcs12 -export -in cert.pem -inkey key.pem -out cluster.pfx)");
        }
        var now = DateTime.Now;
        if (now < certificate.NotBefore || now > certificate.NotAfter)
        {
            var (from, to) = (certificate.NotBefore, certificate.NotAfter);
            certificate.Dispose();
            throw new ControlPlaneTlsException($"{option} {path} is valid from {from:u} to {to:u}, not now; make a new one");
        }
        return new ControlPlaneTls(certificate, path);
    }

    /// <summary>Whether <paramref name="peer"/> is this cluster's certificate.</summary>
    public bool IsClusterCertificate(X509Certificate? peer) =>
        peer is not null && CryptographicOperations.FixedTimeEquals(peer.GetCertHash(HashAlgorithmName.SHA256), _pin);

    /// <summary>Akka.Remote's TLS settings: this certificate on both sides of every connection, and only it accepted.</summary>
    public DotNettySslSetup AkkaSetup(Action<string> refused) => new(Certificate, suppressValidation: false, requireMutualAuthentication: true,
        (certificate, _, peer, _, _) =>
        {
            if (IsClusterCertificate(certificate)) return true;
            refused($"control plane TLS: refused {peer}: {Describe(certificate)}");
            return false;
        });

    /// <summary>The server side of the guard's TLS session with a peer.</summary>
    public SslServerAuthenticationOptions ServerOptions(Action<string> refused) => new()
    {
        ServerCertificate = Certificate,
        ClientCertificateRequired = true,
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        RemoteCertificateValidationCallback = (_, certificate, _, _) =>
        {
            if (IsClusterCertificate(certificate)) return true;
            refused(Describe(certificate));
            return false;
        },
    };

    /// <summary>The client side of the guard's TLS session with Akka.Remote on loopback.</summary>
    public SslClientAuthenticationOptions ClientOptions() => new()
    {
        TargetHost = ServerName,
        ClientCertificates = [Certificate],
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        RemoteCertificateValidationCallback = (_, certificate, _, _) => IsClusterCertificate(certificate),
    };

    private string Describe(X509Certificate? certificate) => certificate is null
        ? "it presented no certificate (start every rank with the same --tls-cert)"
        : $"its certificate '{certificate.Subject}' (SHA-256 {Convert.ToHexString(certificate.GetCertHash(HashAlgorithmName.SHA256))[..16]}...) is not this cluster's ({Fingerprint[..16]}...); give every rank the same --tls-cert file";
}
