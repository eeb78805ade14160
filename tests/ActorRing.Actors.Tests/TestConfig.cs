using ActorRing.Actors.Hosting;
using Akka.Configuration;

namespace ActorRing.Actors.Tests;

public static class TestConfig
{
    /// <summary>
    /// The shipped HOCON with a local provider, plus serialize-messages: every message the actors exchange in a
    /// spec goes through the serializer bound in hocon/, as if it crossed the network.
    /// </summary>
    public static Config Local => ConfigurationFactory.ParseString("""
        akka.actor.provider = local
        akka.actor.serialize-messages = on
        akka.loglevel = DEBUG
        """).WithFallback(ActorRingAkkaExtensions.LoadHocon());
}
