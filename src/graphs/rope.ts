// Rotary position embedding tables as HF Llama computes them (rotate_half layout): inv_freq from rope_theta,
// optionally rescaled by the llama3 rule, then cos/sin of position · inv_freq duplicated over both halves.

import type { ModelConfig } from '../model/config.js';
import { tensor, type Tensor } from '../tensor.js';

export function inverseFrequencies(cfg: ModelConfig): Float64Array {
  const half = cfg.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.fround(1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim));
  const rs = cfg.ropeScaling;
  if (rs === null) return inv;
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
export function ropeTables(cfg: ModelConfig, positions: ArrayLike<number>): { cos: Tensor<'float32'>; sin: Tensor<'float32'> } {
  const inv = inverseFrequencies(cfg);
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

/** additive causal mask `[T, T]`: 0 on and below the diagonal, a large negative number above */
export function causalMask(T: number): Tensor<'float32'> {
  const m = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) m[i * T + j] = -1e30;
  return tensor('float32', [T, T], m);
}

const memo = new Map<string, { cos: Tensor<'float32'>; sin: Tensor<'float32'>; mask: Tensor<'float32'> }>();

/** rope tables and mask for positions 0..T-1, memoised per config and length */
export function positionInputs(cfg: ModelConfig, T: number): { cos: Tensor<'float32'>; sin: Tensor<'float32'>; mask: Tensor<'float32'> } {
  const key = `${cfg.headDim}:${cfg.ropeTheta}:${JSON.stringify(cfg.ropeScaling)}:${T}`;
  let hit = memo.get(key);
  if (!hit) {
    const positions = Array.from({ length: T }, (_, i) => i);
    hit = { ...ropeTables(cfg, positions), mask: causalMask(T) };
    memo.set(key, hit);
  }
  return hit;
}
