using System.Text;
using ActorRing.Actors.Security;

namespace ActorRing.Actors.Tests;

/// <summary>Registration on the control plane: the worker proves the secret before it learns any proof, and
/// strangers cost bounded memory.</summary>
public sealed class AdmissionSpecs
{
    private static readonly byte[] Secret = Encoding.UTF8.GetBytes("admission-secret-0123456789");

    private static Register Prove(byte[] secret, Challenge c, int rank = 1) => new(rank, 2, ControlProtocol.Version, "fp",
        c.ClientNonce, c.ServerNonce, RegistrationProof.Worker(secret, c.ClientNonce, c.ServerNonce, rank, 2, ControlProtocol.Version, "fp"));

    [Fact]
    public void A_hello_is_answered_with_a_nonce_only_and_the_coordinator_proves_itself_after_the_worker()
    {
        var admission = new Admission(Secret, 2, "fp");
        var challenge = admission.Open(new Hello(1, "C1"));
        // Nothing in the challenge depends on the secret: the same Hello under another secret looks alike.
        Assert.Equal("C1", challenge.ClientNonce);
        Assert.Equal(32, challenge.ServerNonce.Length);
        Assert.Equal(["ClientNonce", "ServerNonce"], typeof(Challenge).GetProperties().Select(p => p.Name).Order());

        var register = Prove(Secret, challenge);
        Assert.Null(admission.Check(register));
        var registered = admission.Accept(register);
        Assert.True(RegistrationProof.Matches(RegistrationProof.Coordinator(Secret, "C1", challenge.ServerNonce, 1, 2), registered.CoordinatorProof));
        // The proof is bound to the rank: it does not verify for another one.
        Assert.False(RegistrationProof.Matches(RegistrationProof.Coordinator(Secret, "C1", challenge.ServerNonce, 0, 2), registered.CoordinatorProof));
    }

    [Fact]
    public void A_wrong_secret_learns_nothing_but_the_refusal_and_a_nonce_is_good_once()
    {
        var admission = new Admission(Secret, 2, "fp");
        var challenge = admission.Open(new Hello(1, "C1"));
        var guess = Prove(Encoding.UTF8.GetBytes("a-guessed-secret-000000"), challenge) with { WorldSize = 4 };
        // The proof is checked before the cluster's shape, so a stranger cannot probe world size or model.
        Assert.Equal("wrong cluster secret: the proof does not match; set the same ACTORRING_SECRET on every rank", admission.Check(guess));
        Assert.Equal("registration without a valid challenge (stale or replayed); send Hello first", admission.Check(Prove(Secret, challenge)));
    }

    [Fact]
    public void Open_challenges_are_bounded_in_number_and_lifetime()
    {
        var now = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        var admission = new Admission(Secret, 2, "fp", () => now);
        var first = admission.Open(new Hello(1, "first"));
        for (int i = 0; i < 10_000; i++) admission.Open(new Hello(1, $"flood{i}"));
        Assert.Equal(Admission.MaxOpenChallenges, admission.OpenChallenges);
        // The oldest challenge gave way to the flood; a real worker retries with a fresh Hello.
        Assert.StartsWith("registration without a valid challenge", admission.Check(Prove(Secret, first)));

        var fresh = admission.Open(new Hello(1, "fresh"));
        now += Admission.ChallengeLifetime + TimeSpan.FromSeconds(1);
        Assert.StartsWith("registration without a valid challenge", admission.Check(Prove(Secret, fresh)));
        admission.Open(new Hello(1, "after"));
        Assert.Equal(1, admission.OpenChallenges); // expired ones are dropped on the next Hello
    }

    [Fact]
    public void Each_refusal_is_logged_once_per_peer()
    {
        var admission = new Admission(Secret, 2, "fp");
        Assert.True(admission.FirstRefusal("akka.tcp://a@h:1", "taken"));
        Assert.False(admission.FirstRefusal("akka.tcp://a@h:1", "taken"));
        Assert.True(admission.FirstRefusal("akka.tcp://a@h:2", "taken"));
    }
}
