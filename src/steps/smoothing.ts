// Shared by the smoothing steps (smoothquant, awq): folding per-channel scales into a layer's tensors, the
// parent module whose output AWQ's loss measures, and checks that a mapping's modules can still be smoothed.

import type { WeightMatrix } from '../algo/smoothquant.js';
import type { ParentModule } from '../graphs/awq-kernel.js';
import type { InputSite, LinearSpec, Mapping } from '../model/arch.js';
import { tensor, type Tensor } from '../tensor.js';
import type { LayerState } from './layer-state.js';
import { ReasonedError, type MethodReason } from '../diag/failure.js';

export class SmoothingStepError extends ReasonedError<MethodReason> {}

export function layerTensor(tensors: Readonly<Record<string, Tensor<'float32'>>>, name: string, layer: number): Tensor<'float32'> {
  const t = tensors[name];
  if (!t) throw new SmoothingStepError('missing-tensor', `layer ${layer} has no tensor "${name}" (have ${Object.keys(tensors).join(', ')})`);
  return t;
}

export function weightMatrix(tensors: Readonly<Record<string, Tensor<'float32'>>>, local: string, layer: number): WeightMatrix {
  const t = layerTensor(tensors, `${local}.weight`, layer);
  const [rows, cols] = t.dims as [number, number];
  return { data: t.data, rows, cols };
}

/** a mapping's Linears must not carry quantized weights yet: scaling would invalidate their codes */
export function checkSmoothable(state: LayerState, mapping: Mapping): void {
  for (const m of [mapping.smooth, ...mapping.balance]) {
    if (state.quant[m]) {
      throw new SmoothingStepError(
        'smoothing-quantized-module',
        `layer ${state.layer}: "${m}" was quantized by an earlier stage; smoothing must come before the stage that quantizes it`,
      );
    }
  }
}

/** the shared input site of a mapping's balance Linears */
export function mappingSite(mapping: Mapping, linears: readonly LinearSpec[]): InputSite {
  const specs = mapping.balance.map((b) => {
    const s = linears.find((l) => l.local === b);
    if (!s) throw new SmoothingStepError('bad-mapping', `balance layer "${b}" is not a Linear of the layer; expected one of: ${linears.map((l) => l.local).join(', ')}`);
    return s;
  });
  const sites = new Set(specs.map((s) => s.site));
  if (sites.size !== 1) {
    throw new SmoothingStepError('bad-mapping', `balance layers ${mapping.balance.join(', ')} read different activations (${[...sites].join(', ')}); expected one shared input`);
  }
  return specs[0]!.site;
}

/** llm-compressor's parent: a single balance Linear itself, else the balance layers' common parent module */
export function parentOf(mapping: Mapping, linears: readonly LinearSpec[]): ParentModule {
  const site = mappingSite(mapping, linears);
  if (mapping.balance.length === 1) return { kind: 'linear', balance: [...mapping.balance] };
  const roles = new Set(mapping.balance.map((b) => linears.find((l) => l.local === b)!.role));
  if (site === 'attn_in' && [...roles].every((r) => r === 'q' || r === 'k' || r === 'v')) return { kind: 'self_attn', balance: [...mapping.balance] };
  if (site === 'mlp_in' && [...roles].every((r) => r === 'gate' || r === 'up' || r === 'router')) return { kind: 'mlp', balance: [...mapping.balance] };
  throw new SmoothingStepError('bad-mapping', `balance layers ${mapping.balance.join(', ')} have no common parent module; expected q/k/v of self_attn or gate/up (and router) of the mlp`);
}

/**
 * Fold scales s into the layer: the smooth op (an RMSNorm weight [n], or a Linear's output rows and bias)
 * is divided by s, every balance Linear's columns multiplied by s. A norm scaling by (offset + w) (Gemma 3's
 * offset 1) gets w' = (offset + w) / s − offset. New arrays replace the old tensors.
 */
export function foldScales(tensors: Record<string, Tensor<'float32'>>, mapping: Mapping, s: Float32Array, layer: number, normOffset = 0): void {
  const n = s.length;
  const smooth = layerTensor(tensors, `${mapping.smooth}.weight`, layer);
  const mismatch = (what: string, found: number): SmoothingStepError =>
    new SmoothingStepError('bad-mapping', `layer ${layer}: ${what} has ${found} channels but the mapping's scales have ${n}`);
  if (smooth.dims.length === 1) {
    if (smooth.data.length !== n) throw mismatch(`"${mapping.smooth}.weight"`, smooth.data.length);
    const fold = normOffset === 0 ? (v: number, j: number): number => v / (s[j] as number) : (v: number, j: number): number => (normOffset + v) / (s[j] as number) - normOffset;
    tensors[`${mapping.smooth}.weight`] = tensor('float32', smooth.dims, Float32Array.from(smooth.data, fold));
  } else {
    const [rows, cols] = smooth.dims as [number, number];
    if (rows !== n) throw mismatch(`the output rows of "${mapping.smooth}"`, rows);
    tensors[`${mapping.smooth}.weight`] = tensor('float32', smooth.dims, Float32Array.from(smooth.data, (v, i) => v / (s[Math.floor(i / cols)] as number)));
    const bias = tensors[`${mapping.smooth}.bias`];
    if (bias) tensors[`${mapping.smooth}.bias`] = tensor('float32', bias.dims, Float32Array.from(bias.data, (v, j) => v / (s[j] as number)));
  }
  for (const b of mapping.balance) {
    const w = layerTensor(tensors, `${b}.weight`, layer);
    const cols = w.dims[1] as number;
    if (cols !== n) throw mismatch(`the input columns of "${b}"`, cols);
    tensors[`${b}.weight`] = tensor('float32', w.dims, Float32Array.from(w.data, (v, i) => v * (s[i % cols] as number)));
  }
}
