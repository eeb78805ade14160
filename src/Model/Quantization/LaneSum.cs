using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ActorRing.Model.Quantization;

/// <summary>
/// The eight float lanes of a block dot product summed in one fixed order, so the vector kernels and the
/// portable one give the same bits.
/// </summary>
internal static class LaneSum
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Of(Vector256<float> v) =>
        ((v.GetElement(0) + v.GetElement(1)) + (v.GetElement(2) + v.GetElement(3))) + ((v.GetElement(4) + v.GetElement(5)) + (v.GetElement(6) + v.GetElement(7)));

    public static float Of(ReadOnlySpan<float> v) => ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}
