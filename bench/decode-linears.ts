// The Linear work of one decoded token of the 100m example model, as onnxruntime graphs at M = 1 (shared by
// bench/decode-kernels.ts and bench/decode.ts --linears): each projection shape the int4 export runs (q/k/v
// stacked, o, gate/up stacked, down; the fp32 lm_head), the paths onnxruntime has for a Linear (fp32 MatMul,
// MatMulNBits, int4 DequantizeLinear + MatMul, int8 MatMulInteger / DynamicQuantizeMatMul), and chains of them
// with distinct weights per layer, so the weights stream from memory or L3 as they do when decoding; a Slice or
// Pad fits each output to the next op's input.

import { exampleConfigJson } from '../src/model/example-model.js';
import { EXAMPLE_VOCAB_SIZE } from '../src/model/example-tokenizer.js';
import { Graph, type Value } from '../src/ort/graph.js';
import { seededRandom } from '../src/random.js';

const c = exampleConfigJson('100m', EXAMPLE_VOCAB_SIZE, 'f32') as Record<string, number>;
export const [H, I, L, V] = [c['hidden_size']!, c['intermediate_size']!, c['num_hidden_layers']!, c['vocab_size']!];
const kvRows = 2 * c['num_key_value_heads']! * c['head_dim']!;
export type Shape = { name: string; K: number; N: number };
export const SHAPES: Shape[] = [
  { name: 'q/k/v stacked', K: H, N: H + kvRows },
  { name: 'o_proj', K: H, N: H },
  { name: 'gate/up stacked', K: H, N: 2 * I },
  { name: 'down_proj', K: I, N: H },
  { name: 'lm_head', K: H, N: V },
];

const rand = seededRandom(17);
const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
let serial = 0;
function init(g: Graph, dtype: Parameters<Graph['initializer']>[0]['dtype'], dims: number[], raw: Uint8Array): Value {
  return g.initializer({ name: `w${serial++}`, dtype, dims, raw });
}
const f32 = (n: number, scale: number): Uint8Array => new Uint8Array(Float32Array.from({ length: n }, () => (2 * rand() - 1) * scale).buffer);
const filled = (n: number, v: number): Uint8Array => new Uint8Array(new Float32Array(n).fill(v).buffer);

/** one Linear path: the bytes of weight data it reads per call and the ops that compute x · W */
export interface Path {
  name: string;
  weightBytes(K: number, N: number): number;
  emit(g: Graph, x: Value, K: number, N: number): Value;
}

export const fp32: Path = {
  name: 'fp32 MatMul',
  weightBytes: (K, N) => 4 * K * N,
  emit: (g, x, K, N) => g.matmul(x, init(g, 'float32', [K, N], f32(K * N, Math.sqrt(3 / K)))),
};

export function nbits(block: number, level: number): Path {
  return {
    name: `MatMulNBits int4 block ${block} accuracy_level ${level}`,
    weightBytes: (K, N) => N * Math.ceil(K / block) * (block / 2 + 4),
    emit: (g, x, K, N) => {
      const kb = Math.ceil(K / block);
      // codes uniform in [−8, 7] (zero point 8): scale so that the weight's spread is ~1/√K
      const w = init(g, 'uint8', [N, kb, block / 2], bytes(N * kb * (block / 2)));
      const s = init(g, 'float32', [N * kb], filled(N * kb, 1 / Math.sqrt(21.25 * K)));
      return g.op('MatMulNBits', [x, w, s], { K, N, bits: 4, block_size: block, accuracy_level: level }, { domain: 'com.microsoft' });
    },
  };
}

const dqInt4: Path = {
  name: 'DequantizeLinear int4 block 128 + MatMul',
  weightBytes: (K, N) => (K * N) / 2 + 4 * N * Math.ceil(K / 128),
  emit: (g, x, K, N) => {
    const w = init(g, 'int4', [K, N], bytes((K * N) / 2));
    const s = init(g, 'float32', [Math.ceil(K / 128), N], filled(Math.ceil(K / 128) * N, 1 / Math.sqrt(21.25 * K)));
    return g.matmul(x, g.op('DequantizeLinear', [w, s], { axis: 0, block_size: 128 }, { dtype: 'float32' }));
  },
};

const int8Weights = (g: Graph, K: number, N: number): { w: Value; s: Value } => ({
  w: init(g, 'int8', [K, N], bytes(K * N)),
  s: init(g, 'float32', [N], filled(N, 1 / Math.sqrt(5461 * K))),
});

const matMulInteger: Path = {
  name: 'int8 DynamicQuantizeLinear + MatMulInteger',
  weightBytes: (K, N) => K * N + 4 * N,
  emit: (g, x, K, N) => {
    const { w, s } = int8Weights(g, K, N);
    const [q, xs, zp] = g.opN('DynamicQuantizeLinear', [x], 3, {}, { dtype: 'uint8' });
    const acc = g.op('MatMulInteger', [q!, w, zp!], {}, { dtype: 'int32' });
    return g.mul(g.cast(acc, 'float32'), g.mul({ name: xs!.name, dtype: 'float32' }, s));
  },
};

const dynamicQuantizeMatMul: Path = {
  name: 'int8 DynamicQuantizeMatMul',
  weightBytes: (K, N) => K * N + 4 * N,
  emit: (g, x, K, N) => {
    const { w, s } = int8Weights(g, K, N);
    return g.op('DynamicQuantizeMatMul', [x, w, s], {}, { domain: 'com.microsoft', dtype: 'float32' });
  },
};

export const PATHS: Path[] = [fp32, nbits(128, 0), nbits(128, 4), nbits(64, 4), nbits(32, 4), nbits(32, 0), dqInt4, matMulInteger, dynamicQuantizeMatMul];

/** y [1, N] → [1, K] for the next op: the first K columns, or zero padding */
function fit(g: Graph, y: Value, N: number, K: number): Value {
  if (N === K) return y;
  if (N > K) return g.op('Slice', [y, g.ints([0]), g.ints([K]), g.ints([1])]);
  return g.op('Pad', [y, g.ints([0, 0, 0, K - N])]);
}

/** a chain of the Linears `steps` (each [K, N] with its own weight); the lm_head, when last in `all`, stays fp32 */
export function chain(path: Path, steps: Shape[], fp32Last: boolean): { graph: Graph; K0: number; weightBytes: number } {
  const g = new Graph('decode_kernels');
  const K0 = steps[0]!.K;
  let x = g.input('x', 'float32', [1, K0]);
  let weightBytes = 0;
  steps.forEach((s, i) => {
    const p = fp32Last && i === steps.length - 1 ? fp32 : path;
    x = p.emit(g, x, s.K, s.N);
    weightBytes += p.weightBytes(s.K, s.N);
    const next = steps[i + 1];
    if (next) x = fit(g, x, s.N, next.K);
  });
  g.output(x, 'y');
  return { graph: g, K0, weightBytes };
}

/** one token's Linears in model order: per layer qkv → o → gate/up → down, then the lm_head (fp32 in every export) */
export const TOKEN: Shape[] = [...Array.from({ length: L }, () => SHAPES.slice(0, 4)).flat(), SHAPES[4]!];
