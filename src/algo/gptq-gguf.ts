// GPTQ onto GGUF blocks (https://arxiv.org/abs/2210.17323; the block formats of ggml-quants.c): the column
// pass of gptq-columns.ts, where each block's stored qparams are fixed when the column loop enters the block,
// from the block's current (error-updated) weights, exactly as ggml's reference quantizer computes and rounds
// them (float16 d, 6-bit K-quant sub-scales); every column is then quantized under those stored qparams
// (GgufBlockGrid), so the codes GPTQ picks pack with no second rounding and llama.cpp dequantizes exactly the
// values GPTQ saw. llm-compressor fixes group qparams at group entry the same way when it has no observer pass.
// Columns solve in their own order (act order would scatter a block's columns over the pass); the nested
// block levels are aligned to the GGUF block, so on entering one every column of it has every earlier update.

import type { QuantArgs } from '../quant/scheme.js';
import { GgufBlockGrid } from '../quant/gguf-grid.js';
import { BLOCK_FORMATS, rowSigma2, type GgufBlockTypeName } from '../quant/gguf-quantize.js';
import { gridWeight, type GgufWeight } from '../quant/gguf-weight.js';
import type { GgufBlockQParams } from '../quant/gguf-block.js';
import { gptqColumns, type ColumnProblem } from './gptq-columns.js';
import { checkInputs, invert, prepare, type GptqDampening, type GptqOptions } from './gptq.js';

export interface GptqGgufResult {
  readonly weight: GgufWeight;
  /** GPTQ's own loss Σ (w − q)² / U_ii² / 2 */
  readonly loss: number;
  readonly dampening: GptqDampening;
  readonly deadColumns: number;
  readonly timing: { readonly inverseMs: number; readonly solveMs: number };
}

/** block levels of the column pass that put every GGUF block boundary where all its columns are up to date */
function alignedLevels(o: GptqOptions, size: number): Pick<GptqOptions, 'blockSize' | 'superBlock' | 'subBlock'> {
  const up = (v: number): number => Math.max(size, Math.ceil(v / size) * size);
  const sub = o.subBlock ?? 8;
  return { blockSize: o.blockSize % size === 0 ? o.blockSize : up(o.blockSize), superBlock: up(o.superBlock ?? 1024), subBlock: size % sub === 0 ? sub : 1 };
}

export interface GptqGgufOptions extends GptqOptions {
  /** false: block qparams by ggml's reference quantizer; default: its importance-weighted one, with H's diagonal as the imatrix */
  readonly importance?: boolean;
}

/** quantize `w` [rows, cols] to GGUF `type` blocks with GPTQ given its Hessian `h` [cols, cols] */
export async function gptqQuantizeGguf(w: Float32Array, rows: number, cols: number, h: Float64Array, type: GgufBlockTypeName, args: QuantArgs, o: GptqGgufOptions): Promise<GptqGgufResult> {
  checkInputs(w, rows, cols, h, args, o);
  const t0 = performance.now();
  const p = prepare(h, cols, null);
  const { u, dampening } = await invert(h, p, cols, o);
  const t1 = performance.now();

  const format = BLOCK_FORMATS[type];
  const grid = new GgufBlockGrid(format, rows, cols);
  const size = grid.blockSize;
  const block = new Float32Array(rows * size);
  // llama.cpp's imatrix is the mean squared activation of each input; GPTQ's Hessian diagonal 2·E[x²] is proportional
  const importance = o.importance === false ? undefined : Float32Array.from({ length: cols }, (_, j) => h[j * cols + j] as number);
  const sigma2 = Float32Array.from({ length: rows }, (_, r) => rowSigma2(w, r, cols));
  const column = new Float32Array(rows);
  const dq = new Float32Array(rows);
  const solve = (wt: Float32Array | Float64Array, _codesT: Int8Array, dqT: Float32Array, c1: number, c2: number): number => {
    let loss = 0;
    for (let i = c1; i < c2; i++) {
      if (i % size === 0) {
        // the block's qparams from its current weights, row by row (wt is column-major: wt[c·rows + r])
        for (let j = 0; j < size; j++) for (let r = 0; r < rows; r++) block[r * size + j] = wt[(i + j) * rows + r] as number;
        const given: GgufBlockQParams[] = [];
        for (let r = 0; r < rows; r++) {
          const imp = importance === undefined ? undefined : { weights: importance, offset: i, rowSigma2: sigma2[r] as number };
          given.push(format.qparams(block, r * size, imp));
        }
        grid.fixBlock(i / size, undefined, given);
      }
      const base = i * rows;
      for (let r = 0; r < rows; r++) column[r] = wt[base + r] as number;
      grid.quantizeColumn(i, column, dq);
      const inv = 1 / (u[i * cols + i] as number);
      for (let r = 0; r < rows; r++) {
        dqT[base + r] = dq[r] as number;
        const e = ((wt[base + r] as number) - (dq[r] as number)) * inv;
        wt[base + r] = e;
        loss += e * e;
      }
      for (let j = i + 1; j < c2; j++) {
        const hij = u[i * cols + j] as number;
        if (hij === 0) continue;
        const jBase = j * rows;
        for (let r = 0; r < rows; r++) wt[jBase + r] = (wt[jBase + r] as number) - (wt[base + r] as number) * hij;
      }
    }
    return loss;
  };
  const problem: ColumnProblem = {
    rows, cols, order: p.order, dead: p.dead, solve, groupOf: new Int32Array(cols), scale: new Float32Array(1), zeroPoint: new Int8Array(1),
    groups: 1, tensorWide: true, qmin: 0, qmax: 0, u,
  };
  const pass = await gptqColumns(w, problem, { ...o, ...alignedLevels(o, size) });
  return {
    weight: gridWeight(type, grid),
    loss: pass.loss,
    dampening,
    deadColumns: p.dead.reduce((a, b) => a + b, 0),
    timing: { inverseMs: t1 - t0, solveMs: performance.now() - t1 },
  };
}
