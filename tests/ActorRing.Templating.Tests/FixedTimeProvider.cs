namespace ActorRing.Templating.Tests;

/// <summary>A clock stopped at one instant, in UTC, for templates that print today's date.</summary>
internal sealed class FixedTimeProvider(DateTimeOffset now) : TimeProvider
{
    public override DateTimeOffset GetUtcNow() => now;
    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
}
