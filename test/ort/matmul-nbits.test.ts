import { afterAll, describe, expect, test } from 'vitest';
import { computeQParams, dequantizeWeight, quantizeWeight, weightMinMax } from '../../src/quant/qparams.js';
import { packMatMulNBits, packMatMulNBitsZeroPoints } from '../../src/formats/pack-quantized.js';
import { Graph } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import type { Tensor } from '../../src/tensor.js';

// Runs com.microsoft::MatMulNBits on weights packed by pack-quantized.ts and compares with
// x · dequantize(W)ᵀ computed from the same codes: proves the packing is what onnxruntime reads.

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

async function matMulNBits(x: Float32Array, m: number, n: number, k: number, block: number, b: Uint8Array, scales: Float32Array, zp?: Uint8Array): Promise<Float32Array> {
  const kBlocks = Math.ceil(k / block);
  const kernel = await rt.kernel(`test.mmnb:${n}:${k}:${block}:${zp ? 'zp' : 'sym'}`, () => {
    const g = new Graph('mmnb');
    const inputs = [
      g.input('a', 'float32', ['M', k]),
      g.input('b', 'uint8', [n, kBlocks, block / 2]),
      g.input('scales', 'float32', [n * kBlocks]),
    ];
    if (zp) inputs.push(g.input('zero_points', 'uint8', [zp.length]));
    const y = g.op('MatMulNBits', inputs, { K: k, N: n, bits: 4, block_size: block }, { domain: 'com.microsoft', dtype: 'float32' });
    g.output(y, 'y');
    return g;
  });
  const feeds: Record<string, Tensor> = {
    a: { dtype: 'float32', dims: [m, k], data: x },
    b: { dtype: 'uint8', dims: [n, kBlocks, block / 2], data: b },
    scales: { dtype: 'float32', dims: [n * kBlocks], data: scales },
  };
  if (zp) feeds.zero_points = { dtype: 'uint8', dims: [zp.length], data: zp };
  return (await kernel.run(feeds)).y!.data as Float32Array;
}

/** x [m, k] · w [n, k]ᵀ in float64 */
function reference(x: Float32Array, w: Float32Array, m: number, n: number, k: number): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let acc = 0;
    for (let c = 0; c < k; c++) acc += (x[i * k + c] as number) * (w[j * k + c] as number);
    y[i * n + j] = acc;
  }
  return y;
}

describe('MatMulNBits on packMatMulNBits weights', () => {
  const cases = [
    { k: 256, block: 128 },
    { k: 288, block: 128 },
    { k: 172, block: 128 },
    { k: 288, block: 32 },
    { k: 172, block: 32 },
  ];
  for (const { k, block } of cases) {
    for (const symmetric of [true, false]) {
      test(`K=${k}, block ${block}, ${symmetric ? 'symmetric (default zero point 8)' : 'asymmetric (packed zero points)'}`, async () => {
        const n = 24;
        const m = 5;
        const w = values(n * k, k + block);
        for (let j = 0; j < n; j++) w[j * k] = symmetric ? 0.9 : 1.7; // skew some groups for asym
        const args = { num_bits: 4, symmetric, strategy: 'group', group_size: block } as const;
        const { min, max } = weightMinMax(w, n, k, args);
        const qp = computeQParams(min, max, args);
        const codes = quantizeWeight(w, n, k, qp, args);
        const packed = packMatMulNBits(codes, n, k, block);
        const zp = symmetric ? undefined : packMatMulNBitsZeroPoints(qp.zeroPoint, n, packed.kBlocks);
        if (!symmetric) expect(qp.zeroPoint.some((z) => z !== 0)).toBe(true);
        const x = values(m * k, 99);
        const y = await matMulNBits(x, m, n, k, block, packed.data, qp.scale, zp);
        const ref = reference(x, dequantizeWeight(codes, n, k, qp, args), m, n, k);
        let scaleOfY = 0;
        for (const v of ref) scaleOfY = Math.max(scaleOfY, Math.abs(v));
        for (let i = 0; i < ref.length; i++) {
          expect(Math.abs((y[i] as number) - (ref[i] as number))).toBeLessThanOrEqual(1e-4 * Math.max(Math.abs(ref[i] as number), scaleOfY * 1e-2));
        }
      });
    }
  }

  test('a wrong nibble order would be detected: swapping nibbles changes the result', async () => {
    const n = 8;
    const k = 64;
    const args = { num_bits: 4, symmetric: true, strategy: 'group', group_size: 32 } as const;
    const w = values(n * k, 7);
    const { min, max } = weightMinMax(w, n, k, args);
    const qp = computeQParams(min, max, args);
    const codes = quantizeWeight(w, n, k, qp, args);
    const packed = packMatMulNBits(codes, n, k, 32);
    const swapped = packed.data.map((b) => ((b & 0x0f) << 4) | (b >> 4));
    const x = values(2 * k, 3);
    const ref = reference(x, dequantizeWeight(codes, n, k, qp, args), 2, n, k);
    const bad = await matMulNBits(x, 2, n, k, 32, swapped, qp.scale);
    expect(Math.max(...Array.from(bad, (v, i) => Math.abs(v - (ref[i] as number))))).toBeGreaterThan(1e-2);
  });
});
