using static TorchSharp.torch;

namespace ActorRing.Model.Tests;

public class TorchLoadsTests
{
    [Fact]
    public void TorchSharp_native_library_loads_and_computes()
    {
        using var a = tensor(new float[] { 1, 2, 3 });
        using var b = a.sum();
        Assert.Equal(6f, b.item<float>());
    }
}
