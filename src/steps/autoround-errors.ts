// AutoRound's reported output errors: per target, ‖X(W − Q)ᵀ‖² / ‖XWᵀ‖² over the full-precision block's Linear
// inputs X, for the learned Q and for round-to-nearest's (steps/autoround.ts). One pass of the layer reduces
// each input site's XᵀX inside onnxruntime (GPTQ's capture tap, summed in float64), and the errors are the
// quadratic forms tr(D·H·Dᵀ) / tr(W·H·Wᵀ): a site's Gram costs in² per token however many Linears read it,
// where multiplying X by W, W − Q and W − Q_rtn cost 3 · out · in per token and target (q/k/v share one site,
// gate/up another). The same pass counts the tokens the router sends each expert (MoE blocks).

import type { InputSite, LayerSpec, LinearSpec } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import type { Runtime } from '../ort/session.js';
import type { ActQuant } from '../quant/module-quant.js';
import { tensor, type Tensor } from '../tensor.js';
import { forEachBatch } from './activations.js';
import type { RoutedTokens } from './experts.js';
import { addGrams, hostGram, xtxTap } from './gptq-job.js';
import { outputErrorRatios } from './quantized-module.js';

/** per quantized target: its relative output error, and round-to-nearest's; `routed` gets the expert counts */
export async function outputErrors(
  rt: Runtime,
  cfg: ModelConfig,
  layer: LayerSpec,
  routed: RoutedTokens,
  fp: Readonly<Record<string, Tensor<'float32'>>>,
  x: Tensor<'float32'>,
  actQuant: ActQuant,
  quantized: Readonly<Record<string, { autoround: Float32Array; rtn: Float32Array }>>,
): Promise<Record<string, { autoround: number; rtn: number }>> {
  const targets = Object.keys(quantized).map((local) => layer.linears.find((l) => l.local === local)!);
  if (targets.length === 0) return {};
  const bySite = new Map<InputSite, LinearSpec>(targets.map((l) => [l.site, l]));
  const width = (s: InputSite): number => bySite.get(s)!.inFeatures;
  const grams = new Map([...bySite.keys()].map((s) => [s, new Float64Array(width(s) ** 2)] as const));
  const tap = xtxTap([...grams.keys()], width, true, hostGram(rt));
  await forEachBatch(rt, cfg, layer, fp, x, { tap, skipOut: true, actQuant }, async (out) => {
    routed.add(out);
    await addGrams(rt, grams, out);
  });
  const errors: Record<string, { autoround: number; rtn: number }> = {};
  for (const l of targets) {
    const h = tensor('float64', [l.inFeatures, l.inFeatures], grams.get(l.site)!);
    const q = quantized[l.local]!;
    const [autoround, rtn] = await outputErrorRatios(rt, fp[`${l.local}.weight`]!.data, l.outFeatures, l.inFeatures, h, [q.autoround, q.rtn]);
    errors[l.local] = { autoround: autoround as number, rtn: rtn as number };
  }
  return errors;
}
