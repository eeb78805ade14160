using ActorRing.Host.Generation;
using ActorRing.Host.Serve;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace ActorRing.Host.Http;

/// <summary>
/// Start-up output of an HTTP server on rank 0, on stderr whatever the log level: a line for each change of the
/// cluster's state while ranks register and load their shards ("loading: rank 0 40%, rank 1 35%"), then one line
/// with the URL once every rank is ready. The API answers from the start (/health says 503 while loading).
/// </summary>
internal sealed class HttpAnnouncer(ServeOptions options, IServiceProvider services) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var lifetime = services.GetRequiredService<IHostApplicationLifetime>();
        var started = new TaskCompletionSource();
        await using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
        {
            await started.Task.WaitAsync(stoppingToken);
        }
        string url = services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
                     ?? $"http://{options.HttpHost}:{options.HttpPort}";
        var service = services.GetRequiredService<GenerationService>();
        Console.Error.WriteLine($"[http] listening on {url} (GET /health answers 503 until every rank is ready)");
        try
        {
            var client = await service.ClientAsync();
            await client.WaitReadyAsync(options.ReadyTimeout, s => Console.Error.WriteLine($"[cluster] {s.Detail}"), stoppingToken);
            Console.Error.WriteLine($"actorring: serving {options.ModelId} on {url}/v1 (world size {service.WorldSize}, OpenAI-compatible; health at {url}/health)");
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException)
        {
            // The server keeps running: /health says why, and the cluster may still recover.
            Console.Error.WriteLine($"warning: the cluster is not ready: {e.Message}");
        }
    }
}
