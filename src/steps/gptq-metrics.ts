// GPTQ's per-Linear metrics beside round-to-nearest's: output errors ‖X(W − Q)ᵀ‖² relative to ‖XWᵀ‖² (n/2 times
// quadratic forms under H; GPTQ's own from its solve, gptqOutputError), and weight errors. A site whose Hessian
// buffer is overwritten by the inverse factor (gptq.ts quantizeSiteOverwriting) reads rtn's errors under H first.

import { quantizeWeightRtn } from '../algo/fake-quant.js';
import { gptqOutputError, type GptqResult } from '../algo/gptq.js';
import type { Json } from '../cache/key.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import { tensor, type Tensor } from '../tensor.js';
import type { GptqParams, LayerJob } from './gptq-job.js';
import { outputErrorSums, relativeError } from './quantized-module.js';
import type { StepContext } from './types.js';

/** ‖XWᵀ‖² and round-to-nearest's ‖X(W − Q)ᵀ‖² (n/2 times the quadratic forms under H), and rtn's weight error */
export interface RtnErrors {
  energy: number;
  rtn: number;
  weight: number;
}

/** round-to-nearest of one Linear and its errors under H, read while h still holds H */
export async function rtnErrors(job: LayerJob, local: string, h: Float64Array): Promise<RtnErrors> {
  const w = job.state.tensors[`${local}.weight`] as Tensor<'float32'>;
  const [rows, cols] = w.dims as [number, number];
  const rtn = await rtnWeight(job, local);
  const t0 = performance.now();
  const [energy, err] = (await outputErrorSums(job.ctx.runtime, w.data, rows, cols, tensor('float64', [cols, cols], h), [rtn])) as [number, number];
  job.timing.metrics += performance.now() - t0;
  return { energy, rtn: err, weight: relativeError(w.data, rtn) };
}

/** one Linear's weight rounded to nearest with its observer's qparams (dequantized), the comparison for GPTQ */
export async function rtnWeight(job: LayerJob, local: string): Promise<Float32Array> {
  const w = job.state.tensors[`${local}.weight`] as Tensor<'float32'>;
  const [rows, cols] = w.dims as [number, number];
  const module = job.ctx.params.modules[local] as ModuleQuant;
  const t0 = performance.now();
  const globalScale = job.globalScales.get(local);
  const rtn = await quantizeWeightRtn(w.data, rows, cols, module.weights, { runtime: job.ctx.runtime, scaleDtype: job.scaleDtypes.get(local) ?? 'float32', ...(globalScale === undefined ? {} : { globalScale }) });
  job.timing.metrics += performance.now() - t0;
  return rtn.dequantized;
}

/**
 * relative output errors of GPTQ (from its solve where it can: gptqOutputError) and round-to-nearest; `pre`: rtn's
 * errors read before h was overwritten by the factor (then h is H again only when the solve fell back)
 */
async function outputErrors(ctx: StepContext<GptqParams>, w: Float32Array, rows: number, cols: number, h: Float64Array, gptq: Float32Array, rtn: () => Promise<Float32Array>, r: Pick<GptqResult, 'loss' | 'dampening'>, dead: Uint8Array, pre?: RtnErrors): Promise<{ gptq: number; rtn: number }> {
  const solved = gptqOutputError(w, rows, cols, h, gptq, r, dead);
  const sums = pre && solved !== undefined ? [pre.energy, pre.rtn] : await outputErrorSums(ctx.runtime, w, rows, cols, tensor('float64', [cols, cols], h), solved === undefined ? [await rtn(), gptq] : [await rtn()]);
  const [energy, rtnErr, quadGptq] = sums as [number, number, number?];
  const g = solved ?? (quadGptq as number);
  return energy > 0 ? { gptq: g / energy, rtn: rtnErr / energy } : { gptq: 0, rtn: 0 };
}

/** a solved Linear's errors beside round-to-nearest's (output errors under H, weight errors), loss and dampening */
export async function solvedMetrics(job: LayerJob, w: Tensor<'float32'>, h: Float64Array, solved: Float32Array, rtn: () => Promise<Float32Array>, r: Pick<GptqResult, 'loss' | 'dampening'>, dead: Uint8Array, pre?: RtnErrors): Promise<Record<string, Json>> {
  const [rows, cols] = w.dims as [number, number];
  const t0 = performance.now();
  let rtnWeight = pre?.weight;
  const once = async (): Promise<Float32Array> => {
    const q = await rtn();
    rtnWeight ??= relativeError(w.data, q);
    return q;
  };
  const err = await outputErrors(job.ctx, w.data, rows, cols, h, solved, once, r, dead, pre);
  job.timing.metrics += performance.now() - t0;
  return {
    output_error: err.gptq,
    rtn_output_error: err.rtn,
    weight_error: relativeError(w.data, solved),
    rtn_weight_error: rtnWeight as number,
    gptq_loss: r.loss,
    dampening_frac: r.dampening.frac,
    dampening: r.dampening.value,
    dampening_tried: [...r.dampening.tried],
    rtn_fallback: r.dampening.fallback,
  };
}

