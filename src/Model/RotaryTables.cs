namespace ActorRing.Model;

/// <summary>
/// RoPE angles per position and frequency, in the Hugging Face rotate-half convention. Computed in float32
/// like transformers and llama2.c (inv_freq = 1 / theta^(2i/d), angle = position · inv_freq) so greedy
/// decoding reproduces their tokens; llama3, linear, YaRN and LongRoPE scaling rescale inv_freq first, as
/// transformers' rope init functions of those names do. With a partial rotary dimension d (Phi-4-mini) the
/// frequencies are those of a d-wide head, and the tables cover its d / 2 pairs only.
/// </summary>
internal static class RotaryTables
{
    /// <param name="contextLength">The context the tables are built for: LongRoPE picks its factors by it.</param>
    public static float[] InverseFrequencies(ModelConfig c, int contextLength)
    {
        int dim = c.RotaryDim, half = dim / 2;
        var inv = new float[half];
        for (int i = 0; i < half; i++)
            inv[i] = 1f / MathF.Pow((float)c.RopeTheta, 2f * i / dim);
        switch (c.RopeScaling)
        {
            case LongRopeScaling s:
            {
                var factors = contextLength > s.OriginalMaxPositionEmbeddings ? s.LongFactor : s.ShortFactor;
                // transformers: 1 / (factor · base^(2i/d)), one float32 rounding of the product.
                for (int i = 0; i < half; i++) inv[i] = 1f / (factors[i] * MathF.Pow((float)c.RopeTheta, 2f * i / dim));
                break;
            }
            case Llama3RopeScaling s:
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
                break;
            }
            case LinearRopeScaling s:
                for (int i = 0; i < half; i++) inv[i] = (float)(inv[i] / s.Factor);
                break;
            case YarnRopeScaling s:
            {
                // The dimension pair at which a frequency turns `rotations` times over the original context.
                int d = dim;
                double Dimension(double rotations) => d * Math.Log(s.OriginalMaxPositionEmbeddings / (rotations * 2 * Math.PI)) / (2 * Math.Log(c.RopeTheta));
                double low = Dimension(s.BetaFast), high = Dimension(s.BetaSlow);
                if (s.Truncate) (low, high) = (Math.Floor(low), Math.Ceiling(high));
                (low, high) = (Math.Max(low, 0), Math.Min(high, d - 1));
                if (low == high) high += 0.001;
                for (int i = 0; i < half; i++)
                {
                    // keep = 1 (fast frequencies, i below the ramp) keeps inv_freq; 0 (slow ones) divides it by the factor.
                    float ramp = Math.Clamp((float)((i - low) / (high - low)), 0f, 1f);
                    float keep = 1f - ramp;
                    inv[i] = inv[i] / (float)s.Factor * (1f - keep) + inv[i] * keep;
                }
                break;
            }
        }
        return inv;
    }

    /// <summary>cos and sin tables, each [contextLength, rotaryDim/2] row-major; YaRN and LongRoPE scale both by their
    /// attention factor.</summary>
    public static (float[] Cos, float[] Sin) Build(ModelConfig c, int contextLength)
    {
        var inv = InverseFrequencies(c, contextLength);
        int half = inv.Length;
        float scale = c.RopeScaling switch
        {
            YarnRopeScaling y => (float)y.AttentionFactor,
            LongRopeScaling l => (float)l.AttentionFactor,
            _ => 1f,
        };
        var cos = new float[contextLength * half];
        var sin = new float[contextLength * half];
        for (int p = 0; p < contextLength; p++)
        {
            for (int i = 0; i < half; i++)
            {
                float angle = p * inv[i];
                cos[p * half + i] = MathF.Cos(angle) * scale;
                sin[p * half + i] = MathF.Sin(angle) * scale;
            }
        }
        return (cos, sin);
    }
}
