// The onnxruntime round-to-nearest kernel against quant/qparams.ts: codes, scales, zero points and the dequantized
// weight bitwise equal (Object.is: signed zeros included).

import { afterAll, describe, expect, test } from 'vitest';
import { computeQParams, dequantizeWeight, quantizeWeight, weightMinMax } from '../../src/quant/qparams.js';
import { resolveQuantArgs, type QuantArgs } from '../../src/quant/scheme.js';
import { rtnKernelArgs } from '../../src/algo/fake-quant.js';
import { rtnMinMax } from '../../src/ort/kernels/rtn.js';
import { Runtime } from '../../src/ort/session.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

function random(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, (_, i) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    // outliers, exact ties (multiples of a power of two) and a dead (all-zero) row
    const v = ((s / 2 ** 32) * 2 - 1) * (i % 37 === 0 ? 8 : 1);
    return i < 40 ? 0 : i % 11 === 0 ? Math.round(v * 4) / 4 : v;
  });
}

const CASES: [string, Partial<QuantArgs>][] = [
  ['int4 sym group 32 (partial last group)', { num_bits: 4, symmetric: true, group_size: 32, strategy: 'group' }],
  ['int4 asym group 32 (partial last group)', { num_bits: 4, symmetric: false, group_size: 32, strategy: 'group' }],
  ['int8 sym channel', { num_bits: 8, symmetric: true, group_size: null, strategy: 'channel' }],
  ['int8 asym channel', { num_bits: 8, symmetric: false, group_size: null, strategy: 'channel' }],
  ['int4 asym tensor', { num_bits: 4, symmetric: false, group_size: null, strategy: 'tensor' }],
  ['int4 sym group 16 (whole groups)', { num_bits: 4, symmetric: true, group_size: 16, strategy: 'group' }],
];

describe('rtnMinMax', () => {
  for (const [name, input] of CASES) {
    test(`equals quant/qparams.ts bit for bit: ${name}`, async () => {
      const args = resolveQuantArgs(input as never);
      const [rows, cols] = [7, args.group_size === 16 ? 64 : 80];
      const w = random(rows * cols, 5);
      const { min, max } = weightMinMax(w, rows, cols, args);
      const qp = computeQParams(min, max, args);
      const codes = quantizeWeight(w, rows, cols, qp, args);
      const kernelArgs = rtnKernelArgs(args, cols);
      expect(kernelArgs).toBeDefined();
      const got = await rtnMinMax(rt, w, rows, cols, kernelArgs!);
      expect(Array.from(got.codes)).toEqual(Array.from(codes, (v) => v + 0));
      expect(Array.from(got.scale)).toEqual(Array.from(qp.scale));
      expect(Array.from(got.zeroPoint)).toEqual(Array.from(qp.zeroPoint));
      const want = dequantizeWeight(codes, rows, cols, qp, args);
      expect(Buffer.from(got.dequantized.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    });
  }
});
