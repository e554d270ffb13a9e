// Rotary position embedding tables as HF computes them (rotate_half layout): inv_freq from the rope base,
// optionally rescaled (llama3's wavelength blend, or "linear" interpolation), then cos/sin of position ·
// inv_freq duplicated over both halves. A layer's rope and sliding window come from its LayerAttention
// (Gemma 3's local layers have their own base and a window; every other layer the model's rope, no window).

import type { LayerAttention } from '../model/arch.js';
import type { ModelConfig, Rope } from '../model/config.js';
import { tensor, type Tensor } from '../tensor.js';

export function inverseFrequencies(rope: Rope, headDim: number): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.fround(1 / Math.pow(rope.theta, (2 * i) / headDim));
  const rs = rope.scaling;
  if (rs === null) return inv;
  if (rs.type === 'linear') return inv.map((f) => Math.fround(f / rs.factor));
  // llama3: long wavelengths slowed by `factor`, short ones kept, a smooth blend in between
  const lowWavelen = rs.originalMaxPositions / rs.lowFreqFactor;
  const highWavelen = rs.originalMaxPositions / rs.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const f = inv[i] as number;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen > lowWavelen) inv[i] = f / rs.factor;
    else if (wavelen >= highWavelen) {
      const smooth = (rs.originalMaxPositions / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
      inv[i] = (1 - smooth) * (f / rs.factor) + smooth * f;
    }
  }
  return inv;
}

/** cos and sin tables `[positions.length, head_dim]` for the given positions */
export function ropeTables(cfg: ModelConfig, rope: Rope, positions: ArrayLike<number>): { cos: Tensor<'float32'>; sin: Tensor<'float32'> } {
  const inv = inverseFrequencies(rope, cfg.headDim);
  const hd = cfg.headDim;
  const half = hd / 2;
  const cos = new Float32Array(positions.length * hd);
  const sin = new Float32Array(positions.length * hd);
  for (let t = 0; t < positions.length; t++) {
    const p = positions[t] as number;
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * (inv[i] as number));
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[t * hd + i] = c;
      cos[t * hd + i + half] = c;
      sin[t * hd + i] = s;
      sin[t * hd + i + half] = s;
    }
  }
  return { cos: tensor('float32', [positions.length, hd], cos), sin: tensor('float32', [positions.length, hd], sin) };
}

/**
 * additive mask `[S, P+S]` for S queries after P cached positions: 0 where query i (position P+i) may read key
 * j (j ≤ P+i, and P+i − j < window for a sliding-window layer), a large negative number elsewhere
 */
export function attentionMask(S: number, P: number, window: number | null): Tensor<'float32'> {
  const W = P + S;
  const m = new Float32Array(S * W);
  for (let i = 0; i < S; i++) for (let j = 0; j < W; j++) if (j > P + i || (window !== null && P + i - j >= window)) m[i * W + j] = -1e30;
  return tensor('float32', [S, W], m);
}

/** additive causal mask `[T, T]`: 0 on and below the diagonal, a large negative number above */
export function causalMask(T: number): Tensor<'float32'> {
  return attentionMask(T, 0, null);
}

const memo = new Map<string, { cos: Tensor<'float32'>; sin: Tensor<'float32'>; mask: Tensor<'float32'> }>();

/** rope tables and mask of a layer for positions 0..T-1, memoised per rope, window and length */
export function positionInputs(cfg: ModelConfig, attention: LayerAttention, T: number): { cos: Tensor<'float32'>; sin: Tensor<'float32'>; mask: Tensor<'float32'> } {
  const key = `${cfg.headDim}:${attention.rope.theta}:${JSON.stringify(attention.rope.scaling)}:${attention.window}:${T}`;
  let hit = memo.get(key);
  if (!hit) {
    const positions = Array.from({ length: T }, (_, i) => i);
    hit = { ...ropeTables(cfg, attention.rope, positions), mask: attentionMask(T, 0, attention.window) };
    memo.set(key, hit);
  }
  return hit;
}
