// Step `autoround` (SignRound): for one decoder block, learn every targeted Linear's rounding offsets V and
// min/max factors with signSGD so the quantized block, fed the quantized chain's inputs (`hidden`), matches
// the full-precision block on the full-precision chain's inputs (`reference`), as intel/auto-round's
// quant_block with enable_quanted_input. Loss and gradients come from one onnxruntime session
// (graphs/autoround-kernel.ts); the loop, schedule and sampler are algo/autoround.ts. The full-precision
// block's outputs are read from the reference chain's next link (input `target`) when the plan has one. The
// kept iterate is quantized with compressed-tensors' arithmetic (GGUF modules: the trained blocks' codes and
// float16 qparams, algo/autoround-gguf.ts), stored like any quantizer's result, and the quantized block is run
// over `hidden` to give the next block its inputs. In a Mixture-of-Experts block an expert the router sends no
// calibration token gets no gradient and stays round-to-nearest: reported with rule "rtn".

import {
  addScaledGrads, BestTracker, blockRandom, copyParams, IndexSampler, initialParams, linearLr, quantizeLearned, sampleCurve, SCALE_BOUNDS, scaleGrads, signSgdStep, V_BOUND,
  widenedRange,
} from '../algo/autoround.js';
import { quantizeWeightRtn } from '../algo/fake-quant.js';
import { observeWeight } from '../algo/observers.js';
import type { MinMax } from '../quant/qparams.js';
import type { Json } from '../cache/key.js';
import type { LayerSpec } from '../model/arch.js';
import type { ModelConfig } from '../model/config.js';
import { quantLayout, toGroups, type TargetGrads, type TargetParams } from '../algo/autoround-layout.js';
import { autoroundBlockKernel, gradientBuffers, releaseAutoRoundKernels, runAutoRoundBlock, type AutoRoundBlockSpec, type BlockConstants } from '../graphs/autoround-kernel.js';
import type { Runtime } from '../ort/session.js';
import { tensor, type Tensor } from '../tensor.js';
import { hiddenDims, layerBatch, propagate, readHidden, writeHidden } from './activations.js';
import { actQuantOf, openLayerInput, scaleDtypesOf, writeLayerState, type LayerState } from './layer-state.js';
import type { ModuleQuant } from '../quant/module-quant.js';
import { ggufModule, relativeError, setQuantized, setQuantizedGguf } from './quantized-module.js';
import { isLearnedBlockType, quantizeLearnedGguf, type LearnedBlockType } from '../algo/autoround-gguf.js';
import { quantizeGgufRtn } from '../quant/gguf-weight.js';
import { input, optionalInput, type StepContext, type StepImpl } from './types.js';
import { expertReport, RoutedTokens } from './experts.js';
import { outputErrors } from './autoround-errors.js';
import { ReasonedError, type MethodReason } from '../diag/failure.js';
import type { ActQuant } from '../quant/module-quant.js';

export interface AutoRoundParams {
  layer: number;
  modules: Record<string, ModuleQuant>;
  iters: number;
  /** learning rate of V (resolved: 1/iters by default) */
  lr: number;
  /** learning rate of the min/max factors */
  minmax_lr: number;
  batch_size: number;
  /** calibration windows to tune on, the first ones; null: all */
  nsamples: number | null;
  enable_minmax_tuning: boolean;
  not_use_best_mse: boolean;
  seed: number;
}

export class AutoRoundError extends ReasonedError<MethodReason> {}

interface Target {
  local: string;
  module: ModuleQuant;
  w: Float32Array;
  range: MinMax;
  /** the GGUF block type it is stored in (graphs/autoround-gguf.ts) */
  gguf?: LearnedBlockType;
}

const windows = (t: Tensor<'float32'>, start: number, count: number): Tensor<'float32'> => {
  const [, T, H] = t.dims as [number, number, number];
  return tensor('float32', [count, T, H], t.data.subarray(start * T * H, (start + count) * T * H));
};

/** windows `idx` of t, copied into `into` (a buffer reused across iterations: onnxruntime reads feeds in place) */
function gather(t: Tensor<'float32'>, idx: readonly number[], into: Float32Array): Tensor<'float32'> {
  const [, T, H] = t.dims as [number, number, number];
  const out = into.subarray(0, idx.length * T * H);
  idx.forEach((w, k) => out.set(t.data.subarray(w * T * H, (w + 1) * T * H), k * T * H));
  return tensor('float32', [idx.length, T, H], out);
}

/** the windows tuned on: the first nsamples of both chains, which must agree in shape */
function calibration(ctx: StepContext<AutoRoundParams>, hidden: Tensor<'float32'>, reference: readonly number[]): number {
  const [n, T, H] = hidden.dims as [number, number, number];
  const [nr, Tr, Hr] = reference as [number, number, number];
  if (T !== Tr || H !== Hr || nr < 1 || n < 1) {
    throw new AutoRoundError('autoround-input-mismatch', `quantized-path inputs are [${hidden.dims.join(', ')}] but full-precision inputs are [${reference.join(', ')}]; expected the same window length and width`);
  }
  const want = ctx.params.nsamples ?? Math.min(n, nr);
  if (want > Math.min(n, nr)) ctx.warn(`autoround: nsamples ${want} but only ${Math.min(n, nr)} calibration windows; tuning on all of them`);
  return Math.min(want, n, nr);
}

/** the modules to train; a GGUF module no block fits stays unquantized, reported in `skipped` */
async function targetsOf(rt: Runtime, state: LayerState, modules: Record<string, ModuleQuant>, skipped: Record<string, Json>): Promise<Target[]> {
  const out: Target[] = [];
  for (const [local, asked] of Object.entries(modules)) {
    const w = state.tensors[`${local}.weight`];
    if (!w) throw new AutoRoundError('autoround-missing-weight', `layer ${state.layer} has no weight "${local}.weight"; expected one of: ${Object.keys(state.tensors).join(', ')}`);
    if (asked.weights.actorder === 'group') {
      throw new AutoRoundError('autoround-unsupported-actorder', `module ${local}: actorder "group" is not supported by autoround; expected null or "static"`);
    }
    const [rows, cols] = w.dims as [number, number];
    const gguf = ggufModule(asked, cols);
    if (gguf && 'skip' in gguf) {
      skipped[local] = { skipped: gguf.skip };
      continue;
    }
    if (gguf && !isLearnedBlockType(gguf.type)) throw new AutoRoundError('autoround-unsupported-scheme', `module ${local}: GGUF ${gguf.type} blocks are not learned by autoround; expected Q8_0, Q4_0, Q5_0 or Q4_1`);
    const module = gguf ? gguf.module : asked;
    const range = await observeWeight(w.data, rows, cols, module.weights, { runtime: rt });
    out.push({ local, module, w: w.data, range, ...(gguf ? { gguf: gguf.type as LearnedBlockType } : {}) });
  }
  return out;
}

interface Training {
  losses: number[];
  best: BestTracker<Record<string, TargetParams>>;
  kept: Record<string, TargetParams>;
  keptIter: number | null;
  trainMs: number;
  ortMs: number;
}

/** the signSGD loop of auto-round's quant_block over minibatches of the calibration windows */
async function train(ctx: StepContext<AutoRoundParams>, cfg: ModelConfig, spec: AutoRoundBlockSpec, constants: BlockConstants, x: Tensor<'float32'>, y: Tensor<'float32'>): Promise<Training> {
  const p = ctx.params;
  const params: Record<string, TargetParams> = Object.fromEntries(spec.targets.map((t) => [t.local, initialParams(t.layout)]));
  // one snapshot, overwritten at each improvement (a new copy each time would leave weight-sized garbage)
  let saved: Record<string, TargetParams> | undefined;
  const snapshot = (): Record<string, TargetParams> => (saved = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, copyParams(v, saved?.[k])])));
  const best = new BestTracker<Record<string, TargetParams>>();
  const losses: number[] = [];
  let kept = params;
  let keptIter: number | null = null;
  const [n, T] = x.dims as [number, number];
  const sampler = new IndexSampler(n, p.batch_size, blockRandom(p.seed, p.layer));
  const micro = layerBatch(cfg, T);
  const kernel = p.iters > 0 && spec.targets.length > 0 ? await autoroundBlockKernel(ctx.runtime, spec) : undefined;
  // buffers reused by every iteration: the windows fed, and the gradients onnxruntime writes (the first part's,
  // which accumulates the minibatch's, and the other parts')
  const [, , H] = x.dims as [number, number, number];
  const feed = { x: new Float32Array(Math.min(micro, n) * T * H), y: new Float32Array(Math.min(micro, n) * T * H) };
  const buffers = kernel ? [gradientBuffers(spec), ...(micro < sampler.batchSize ? [gradientBuffers(spec)] : [])] : [];
  const [t0, busy0] = [performance.now(), ctx.runtime.busyMs];
  for (let it = 0; it < p.iters && kernel; it++) {
    ctx.signal.throwIfAborted();
    const idx = sampler.next();
    // minibatches above one onnxruntime call's budget run in parts: the mean loss is the parts' weighted sum
    let loss = 0;
    let grads: Record<string, TargetGrads> = {};
    for (let b = 0; b < idx.length; b += micro) {
      const part = idx.slice(b, b + micro);
      const res = await runAutoRoundBlock(kernel, spec, constants, gather(x, part, feed.x), gather(y, part, feed.y), params, buffers[b === 0 ? 0 : 1]);
      const weight = part.length / idx.length;
      loss += res.loss * weight;
      grads = part.length === idx.length ? res.grads : b === 0 ? scaleGrads(res.grads, weight) : addScaledGrads(grads, res.grads, weight);
    }
    if (!Number.isFinite(loss)) throw new AutoRoundError('autoround-loss-not-finite', `layer ${p.layer}: block loss is ${loss} at iteration ${it}; expected a finite number`);
    losses.push(loss);
    if (best.observe(it, loss, p.not_use_best_mse ? () => params : snapshot) && !p.not_use_best_mse) keptIter = it;
    if (p.not_use_best_mse && it === p.iters - 1) [kept, keptIter] = [snapshot(), it];
    const [lr, mmLr] = [linearLr(p.lr, it, p.iters), linearLr(p.minmax_lr, it, p.iters)];
    for (const [local, g] of Object.entries(grads)) {
      const q = params[local]!;
      signSgdStep(q.v, g.v, lr, -V_BOUND, V_BOUND);
      if (g.minScale) signSgdStep(q.minScale, g.minScale, mmLr, ...SCALE_BOUNDS);
      if (g.maxScale) signSgdStep(q.maxScale, g.maxScale, mmLr, ...SCALE_BOUNDS);
    }
    ctx.progress(it + 1, p.iters, `loss ${loss.toExponential(1)} best ${best.loss.toExponential(1)}`);
  }
  if (!p.not_use_best_mse && best.params) kept = best.params;
  // the session's arena holds a call's buffers: freed before the rest of the step allocates its own
  if (kernel) await releaseAutoRoundKernels(ctx.runtime);
  return { losses, best, kept, keptIter, trainMs: performance.now() - t0, ortMs: ctx.runtime.busyMs - busy0 };
}

export const autoroundStep: StepImpl<'autoround', AutoRoundParams> = {
  kind: 'autoround',
  async run(ctx) {
    const p = ctx.params;
    const { src, state } = await openLayerInput(ctx, p.layer);
    try {
      const cfg = src.config;
      const layer = src.arch.layer(cfg, p.layer);
      const hidden = await readHidden(input(ctx, 'hidden').dir);
      // the full-precision chain's inputs are read only when this step runs the block on them (no `target`)
      const referenceDir = input(ctx, 'reference').dir;
      const n = calibration(ctx, hidden, await hiddenDims(referenceDir));
      const fpActQuant = actQuantOf(state.quant);
      const fpTensors = { ...state.tensors };
      const x = windows(hidden, 0, n);
      // the full-precision block's outputs on the reference windows: the chain's next link when planned (input
      // `target`, the same forward), else computed here (the last layer)
      const target = optionalInput(ctx, 'target');
      const y = target ? windows(await readHidden(target.dir), 0, n) : await propagate(ctx.runtime, cfg, layer, fpTensors, windows(await readHidden(referenceDir), 0, n), fpActQuant);

      const modules: Record<string, Json> = {};
      const targets = await targetsOf(ctx.runtime, state, p.modules, modules);
      const spec: AutoRoundBlockSpec = {
        cfg,
        layer,
        targets: targets.map((t) => {
          const [rows, cols] = state.tensors[`${t.local}.weight`]!.dims as [number, number];
          const a = t.module.weights;
          return { local: t.local, layout: quantLayout(rows, cols, a.strategy, a.group_size), bits: a.num_bits, symmetric: a.symmetric, ...(t.gguf ? { gguf: t.gguf } : {}) };
        }),
        actQuant: actQuantOf({ ...state.quant, ...p.modules }),
        minmax: p.enable_minmax_tuning,
      };
      const constants: BlockConstants = { tensors: fpTensors, targets: {} };
      // GGUF blocks take the raw block range (ggml's Q4_1 does not widen it to 0; the symmetric types' |max| is the same)
      spec.targets.forEach((t, i) => (constants.targets[t.local] = { w: toGroups(targets[i]!.w, t.layout), ...(t.gguf ? targets[i]!.range : widenedRange(targets[i]!.range)) }));
      const run = await train(ctx, cfg, spec, constants, x, y);

      const deltas: Record<string, { autoround: Float32Array; rtn: Float32Array }> = {};
      const scaleDtypes = await scaleDtypesOf(src, p.layer, spec.targets.map((t) => t.local));
      for (const [i, t] of spec.targets.entries()) {
        const { w, range, module } = targets[i]!;
        if (t.gguf) {
          // the codes and float16 qparams the graph trained with: the blocks the gguf output packs as they are
          const q = quantizeLearnedGguf(t.gguf, w, t.layout, range, run.kept[t.local]!);
          const rtn = quantizeGgufRtn(t.gguf, w, t.layout.rows, t.layout.cols);
          deltas[t.local] = { autoround: q.dequantized, rtn: rtn.dequantized };
          modules[t.local] = { weight_error: relativeError(w, q.dequantized), rtn_weight_error: relativeError(w, rtn.dequantized), gguf: t.gguf };
          setQuantizedGguf(state, t.local, q, module);
          continue;
        }
        const scaleDtype = scaleDtypes.get(t.local) ?? 'float32';
        const q = quantizeLearned(w, t.layout, range, run.kept[t.local]!, module.weights, scaleDtype);
        const rtn = await quantizeWeightRtn(w, t.layout.rows, t.layout.cols, module.weights, { runtime: ctx.runtime, scaleDtype });
        deltas[t.local] = { autoround: q.dequantized, rtn: rtn.dequantized };
        modules[t.local] = { weight_error: relativeError(w, q.dequantized), rtn_weight_error: relativeError(w, rtn.dequantized) };
        setQuantized(state, t.local, t.layout.rows, t.layout.cols, q, module);
      }
      const routed = new RoutedTokens();
      const errors = await outputErrors(ctx.runtime, cfg, layer, routed, fpTensors, x, fpActQuant, deltas);
      const [, T] = x.dims as [number, number];
      const experts = expertReport(p.layer, src.arch.layerPrefix(p.layer), layer.linears, Object.keys(p.modules), routed.counts, n * T, 'rtn');
      for (const w of experts?.warnings ?? []) ctx.warn(w);
      for (const [local, e] of Object.entries(errors)) modules[local] = { ...(modules[local] as Record<string, Json>), output_error: e.autoround, rtn_output_error: e.rtn };

      await writeHidden(ctx.outDir, await propagate(ctx.runtime, cfg, layer, state.tensors, hidden, actQuantOf(state.quant)));
      await writeLayerState(ctx.outDir, state);
      const { losses, best } = run;
      return {
        layer: p.layer,
        windows: n,
        iters: p.iters,
        batch_size: Math.min(p.batch_size, n),
        loss_iter0: losses[0] ?? null,
        best_loss: Number.isFinite(best.loss) ? best.loss : null,
        best_iter: best.iter >= 0 ? best.iter : null,
        kept_iter: run.keptIter,
        last_loss: losses.at(-1) ?? null,
        loss_curve: sampleCurve(losses),
        ms_per_iter: losses.length > 0 ? run.trainMs / losses.length : null,
        ort_share: run.trainMs > 0 ? run.ortMs / run.trainMs : null,
        modules,
        ...(experts ? { experts: experts.metrics, warnings: experts.warnings } : {}),
      };
    } finally {
      await src.close();
    }
  },
};
