using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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

    /// <summary>
    /// Four rows' lane sums at once, in the order of <see cref="Of(Vector256{float})"/>, stored to y[0..3]. The
    /// 512-bit kernels keep row r's lanes 0..3 in 128-bit lane r of <paramref name="low"/> and its lanes 4..7 in
    /// 128-bit lane r of <paramref name="high"/>; float addition is commutative, so (a+b) and (b+a) are the
    /// same bits and the pairs may be formed in either operand order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Of4Rows(Vector512<float> low, Vector512<float> high, float* y)
    {
        const byte SwapNeighbours = 0b10_11_00_01, SwapHalves = 0b01_00_11_10;
        var pairsLow = low + Avx512F.Permute4x32(low, SwapNeighbours);       // lane 4r: l0+l1, lane 4r+2: l2+l3
        var pairsHigh = high + Avx512F.Permute4x32(high, SwapNeighbours);
        var quadLow = pairsLow + Avx512F.Permute4x32(pairsLow, SwapHalves);   // lane 4r: (l0+l1)+(l2+l3)
        var quadHigh = pairsHigh + Avx512F.Permute4x32(pairsHigh, SwapHalves);
        var rows = quadLow + quadHigh;
        Avx512F.PermuteVar16x32(rows, Vector512.Create(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower().GetLower().Store(y);
    }
}
