// How each Linear is written into the exported ONNX graph (DESIGN.md §3):
//   fp32            MatMul with the weight stored transposed [in, out]
//   int4 weights    com.microsoft::MatMulNBits (block = group size, rounded up to a power of two ≥ 16 for
//                   channel scales; asymmetric zero points packed per row)
//   int8 weights    DequantizeLinear (per output channel) → MatMul
//   W8A8            per-token symmetric int8 quantization of the input (as compressed-tensors' dynamic token
//                   activations), MatMulInteger int8 × int8 → int32, rescaled by the token and channel scales
//   W4A8            the input fake-quantized per token to int8 (Abs/ReduceMax/Div/Round/Clip/Mul, the decoder
//                   graph's ops), then MatMulNBits as for int4: group scales along K rule out MatMulInteger's
//                   per-column rescale, and accuracy_level 4 re-quantizes the (already int8-valued) input per block
// Float weights (FP8, NVFP4, MXFP4) have no onnxruntime CPU kernel; the onnx output refuses them at plan time.

import type { ExternalData } from '../formats/onnx-file.js';
import { packMatMulNBits, packMatMulNBitsZeroPoints } from '../formats/pack-quantized.js';
import type { QuantizedModule } from '../quant/module-quant.js';
import type { Graph, Value } from '../ort/graph.js';
import { tensor, type Tensor } from '../tensor.js';
import { ReasonedError } from '../diag/failure.js';
import { FP32_EPS } from '../quant/qparams.js';
import { perTokenFakeQuant } from './act-quant.js';

function transpose(w: Tensor<'float32'>): Tensor<'float32'> {
  const [rows, cols] = w.dims as [number, number];
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w.data[r * cols + c] as number;
  return tensor('float32', [cols, rows], out);
}

function transposeInt8(w: Tensor<'int8'>): Tensor<'int8'> {
  const [rows, cols] = w.dims as [number, number];
  const out = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w.data[r * cols + c] as number;
  return tensor('int8', [cols, rows], out);
}

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(16, n)));

export interface LinearWeights {
  name: string;
  weight: Tensor<'float32'>;
  bias?: Tensor<'float32'>;
  quant?: QuantizedModule;
}

export interface ExportLinearOptions {
  /** MatMulNBits accuracy_level: 0 fp32 math, 4 int8 activations (faster, slightly different numbers) */
  accuracyLevel: number;
}

/**
 * Add one Linear's initializers (streamed to the external data file) and return the function that emits
 * `x · Wᵀ (+ b)` for it.
 */
export async function exportLinear(g: Graph, data: ExternalData, lw: LinearWeights, o: ExportLinearOptions): Promise<(x: Value) => Value> {
  const init = async (suffix: string, t: Tensor): Promise<Value> => g.initializer(await data.tensor(`${lw.name}.${suffix}`, t));
  const [N, K] = lw.weight.dims as [number, number];
  const q = lw.quant;
  const bias = lw.bias ? await init('bias', lw.bias) : undefined;
  // int weights with dynamic per-token int activations: W8A8 quantizes them in its MatMulInteger path, others
  // (W4A8) fake-quantize them before their weight's kernel
  const tokenBits = q?.input_activations?.strategy === 'token' && q.input_activations.type === 'int' ? q.input_activations.num_bits : undefined;
  const fusedW8A8 = tokenBits === 8 && q?.weights.type === 'int' && q.weights.num_bits === 8;
  const withBias = (emit: (x: Value) => Value) => (x: Value): Value => {
    const y = emit(tokenBits === undefined || fusedW8A8 ? x : perTokenFakeQuant(g, x, tokenBits));
    return bias ? g.add(y, bias) : y;
  };
  if (!q) {
    const wt = await init('weight_t', transpose(lw.weight));
    return withBias((x) => g.matmul(x, wt));
  }
  if (q.weights.type === 'float' || (q.input_activations && tokenBits === undefined)) {
    throw new ReasonedError('unsupported-output-scheme', `${lw.name}: the onnx output writes int weights with dynamic per-token int activations only; found ${q.weights.type} ${q.weights.num_bits}-bit weights`);
  }
  if (fusedW8A8) {
    const wq = await init('weight_q_t', transposeInt8(q.codes));
    const ws = await init('weight_scale', tensor('float32', [N], q.scale.data));
    const zero = g.constant(tensor('uint8', [], Uint8Array.of(128)), 'act_zero_point');
    return withBias((x) => {
      // symmetric per-token codes q ∈ [−128, 127], stored as q + 128 in uint8 (zero point 128): the u8 × s8
      // MatMulInteger kernel is onnxruntime's fast path, and Σ (u − 128)·w is exactly Σ q·w
      const absMax = g.reduceMax(g.op('Abs', [x]), [-1]);
      const s = g.op('Max', [g.div(absMax, g.scalar(127.5)), g.scalar(FP32_EPS)]);
      const q = g.op('Clip', [g.op('Round', [g.div(x, s)]), g.scalar(-128), g.scalar(127)]);
      const u = g.cast(g.add(q, g.scalar(128)), 'uint8');
      const acc = g.op('MatMulInteger', [u, wq, zero], {}, { dtype: 'int32' });
      return g.mul(g.mul(g.cast(acc, 'float32'), s), ws);
    });
  }
  const block = nbitsBlock(lw);
  if (block !== undefined) {
    const inputs = await nbitsInputs(g, data, lw.name, q.codes.data, N, K, block, q.scale.data, q.zeroPoint?.data);
    const attrs = { K, N, bits: 4, block_size: block, accuracy_level: o.accuracyLevel };
    return withBias((x) => g.op('MatMulNBits', [x, ...inputs], attrs, { domain: 'com.microsoft' }));
  }
  if (q.weights.strategy === 'channel' && !q.gIdx) {
    // int8 weight-only: dequantize in the graph (onnxruntime folds it into the weight at load time)
    const wq = await init('weight_q', q.codes);
    const ws = await init('weight_scale', tensor('float32', [N], q.scale.data));
    return withBias((x) => g.matmul(x, g.transpose(g.op('DequantizeLinear', [wq, ws], { axis: 0 }, { dtype: 'float32' }), [1, 0])));
  }
  // act-order groups and other layouts without an onnxruntime kernel: the dequantized weight in fp32
  const wt = await init('weight_dequant_t', transpose(lw.weight));
  return withBias((x) => g.matmul(x, wt));
}

/** the MatMulNBits block size of an int4 weight-only Linear (group size, or K rounded up for channel scales) */
function nbitsBlock(lw: LinearWeights): number | undefined {
  const q = lw.quant;
  if (!q || q.weights.type !== 'int' || q.weights.num_bits !== 4 || q.gIdx) return undefined;
  const K = lw.weight.dims[1] as number;
  const groups = q.scale.dims[1] as number;
  const block = q.weights.strategy === 'group' ? (q.weights.group_size as number) : nextPow2(K);
  if (block !== nextPow2(block) || (q.weights.strategy === 'group' && groups !== Math.ceil(K / block))) {
    throw new ReasonedError('unsupported-output-scheme', `${lw.name}: MatMulNBits needs a power-of-two group size ≥ 16, found ${q.weights.group_size}`);
  }
  return block;
}

/** MatMulNBits' weight, scale (and zero point) initializers for int4 codes [N, K] and scales [N, K / block] */
async function nbitsInputs(g: Graph, data: ExternalData, name: string, codes: Int8Array, N: number, K: number, block: number, scale: Float32Array, zeroPoint?: Int8Array): Promise<Value[]> {
  const init = async (suffix: string, t: Tensor): Promise<Value> => g.initializer(await data.tensor(`${name}.${suffix}`, t));
  const packed = packMatMulNBits(codes, N, K, block, 4);
  const inputs = [await init('weight_nbits', tensor('uint8', packed.dims, packed.data)), await init('weight_nbits_scale', tensor('float32', [N * packed.kBlocks], scale))];
  if (zeroPoint) {
    const zp = packMatMulNBitsZeroPoints(zeroPoint, N, packed.kBlocks, 4);
    inputs.push(await init('weight_nbits_zero_point', tensor('uint8', [zp.length], zp)));
  }
  return inputs;
}

/**
 * One MatMulNBits for several int4 Linears that read the same input (q/k/v, gate/up): their rows stacked along
 * N in the order given, so output column n is the dot product the Linear's own MatMulNBits computes (the input
 * is quantized per block the same way for every column). Undefined unless every Linear is weight-only int4
 * with the same K, block and zero-point layout and no bias; the caller then emits them one by one.
 */
export async function exportPackedLinear(g: Graph, data: ExternalData, name: string, lws: readonly LinearWeights[], o: ExportLinearOptions): Promise<((x: Value) => Value) | undefined> {
  const first = lws[0];
  if (!first) return undefined;
  const K = first.weight.dims[1] as number;
  const block = nbitsBlock(first);
  const eligible = (lw: LinearWeights): boolean =>
    !lw.bias && !lw.quant?.input_activations && lw.weight.dims[1] === K && nbitsBlock(lw) === block && (lw.quant?.zeroPoint === undefined) === (first.quant?.zeroPoint === undefined);
  if (block === undefined || !lws.every(eligible)) return undefined;
  const rows = lws.map((lw) => lw.weight.dims[0] as number);
  const N = rows.reduce((a, b) => a + b, 0);
  const concat = <A extends Int8Array | Float32Array>(make: new (n: number) => A, parts: readonly A[]): A => {
    const out = new make(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  const qs = lws.map((lw) => lw.quant!);
  const zp = first.quant?.zeroPoint ? concat(Int8Array, qs.map((q) => q.zeroPoint!.data)) : undefined;
  const inputs = await nbitsInputs(g, data, name, concat(Int8Array, qs.map((q) => q.codes.data)), N, K, block, concat(Float32Array, qs.map((q) => q.scale.data)), zp);
  const attrs = { K, N, bits: 4, block_size: block, accuracy_level: o.accuracyLevel };
  return (x) => g.op('MatMulNBits', [x, ...inputs], attrs, { domain: 'com.microsoft' });
}
