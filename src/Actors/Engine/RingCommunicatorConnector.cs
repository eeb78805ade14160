using ActorRing.Transport;
using Microsoft.Extensions.Logging;

namespace ActorRing.Actors.Engine;

/// <summary>The real data plane: <see cref="RingCommunicator.ConnectAsync"/> with this rank's ring file.</summary>
public sealed class RingCommunicatorConnector(RingConfig config, RingOptions options, ILogger? logger) : IRingConnector
{
    public int Rank => config.Rank;
    public int WorldSize => config.WorldSize;

    public async Task<ICollectives> ConnectAsync(CancellationToken cancellationToken) =>
        await RingCommunicator.ConnectAsync(config, options, logger, cancellationToken);
}
