namespace ActorRing.Model;

/// <summary>
/// RoPE angles per position and frequency, in the Hugging Face rotate-half convention. Computed in float32
/// like transformers and llama2.c (inv_freq = 1 / theta^(2i/d), angle = position · inv_freq) so greedy
/// decoding reproduces their tokens; llama3 scaling rescales inv_freq by wavelength band first.
/// </summary>
internal static class RotaryTables
{
    public static float[] InverseFrequencies(ModelConfig c)
    {
        int half = c.HeadDim / 2;
        var inv = new float[half];
        for (int i = 0; i < half; i++)
            inv[i] = 1f / MathF.Pow((float)c.RopeTheta, 2f * i / c.HeadDim);
        if (c.RopeScaling is { } s)
        {
            double lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
            double highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
            for (int i = 0; i < half; i++)
            {
                double f = inv[i];
                double wavelen = 2 * Math.PI / f;
                if (wavelen > lowWavelen)
                {
                    f /= s.Factor; // long wavelengths: fully interpolated
                }
                else if (wavelen >= highWavelen)
                {
                    // The band between: blend interpolated and original frequencies smoothly.
                    double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    f = (1 - smooth) * f / s.Factor + smooth * f;
                }
                inv[i] = (float)f;
            }
        }
        return inv;
    }

    /// <summary>cos and sin tables, each [contextLength, headDim/2] row-major.</summary>
    public static (float[] Cos, float[] Sin) Build(ModelConfig c, int contextLength)
    {
        var inv = InverseFrequencies(c);
        int half = inv.Length;
        var cos = new float[contextLength * half];
        var sin = new float[contextLength * half];
        for (int p = 0; p < contextLength; p++)
        {
            for (int i = 0; i < half; i++)
            {
                float angle = p * inv[i];
                cos[p * half + i] = MathF.Cos(angle);
                sin[p * half + i] = MathF.Sin(angle);
            }
        }
        return (cos, sin);
    }
}
