// The float fake-quant graphs (ort/kernels/float-quant.ts, graphs/act-quant.ts) against the TypeScript
// reference codes (quant/fp8.ts, quant/fp4.ts, algo/fake-quant.ts), bit for bit, signed zeros included.

import { afterAll, describe, expect, test } from 'vitest';
import { fakeQuantizeActivations } from '../../src/algo/fake-quant.js';
import { activationFakeQuant } from '../../src/graphs/act-quant.js';
import { Graph, type Value } from '../../src/ort/graph.js';
import { mxScale, roundToFp4, roundToFp8 } from '../../src/ort/kernels/float-quant.js';
import { Runtime } from '../../src/ort/session.js';
import { mxScaleByte, mxScaleValue, roundFp4E2m1 } from '../../src/quant/fp4.js';
import { FP8_E4M3_VALUES, roundFp8E4m3 } from '../../src/quant/fp8.js';
import { presetScheme, type QuantArgs } from '../../src/quant/scheme.js';
import { tensor } from '../../src/tensor.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

const bits = (a: Float32Array): number[] => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
const F = new Float32Array(1);
const U = new Uint32Array(F.buffer);
/** x and its float32 neighbours of the same sign */
function around(x: number): number[] {
  F[0] = x;
  const b = U[0] as number;
  const out = [x];
  for (const d of [-1, 1]) {
    U[0] = (b + d) >>> 0;
    if (Number.isFinite(F[0]) && Math.sign(F[0] as number) === Math.sign(x)) out.push(F[0] as number);
  }
  return out;
}

async function elementwise(key: string, x: Float32Array, build: (g: Graph, v: Value) => Value): Promise<Float32Array> {
  const k = await rt.kernel(key, () => {
    const g = new Graph(key);
    g.output(build(g, g.input('x', 'float32', ['N'])), 'y');
    return g;
  });
  return (await k.run({ x: tensor('float32', [x.length], x) })).y!.data as Float32Array;
}

function seeded(n: number, seed: number, spread: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const u = s / 2 ** 32 - 0.5;
    return u * spread * Math.exp(6 * Math.abs(u));
  });
}

describe('float grids in onnxruntime equal the TypeScript codes', () => {
  test('fp8 Cast: every value, every midpoint and their neighbours, subnormals, ±0', async () => {
    const vals: number[] = [0, -0];
    const finite = Array.from(FP8_E4M3_VALUES).filter((v) => Number.isFinite(v) && v >= 0).sort((a, b) => a - b);
    finite.forEach((v, i) => {
      vals.push(...around(v), ...around(-v));
      const next = finite[i + 1];
      if (next !== undefined) vals.push(...around((v + next) / 2), ...around(-(v + next) / 2));
    });
    vals.push(...seeded(4000, 7, 40));
    const x = Float32Array.from(vals.map((v) => Math.max(-448, Math.min(448, v))));
    const ort = await elementwise('test.fp8', x, roundToFp8);
    expect(bits(ort)).toEqual(bits(x.map((v) => roundFp8E4m3(v))));
  });

  // −0 never reaches the grid (the zero point is added first, as in torch): cast_to_fp4 gives +0, the graph −0
  test('fp4 by arithmetic: thresholds, ties and their neighbours, −0 for small negatives', async () => {
    const vals: number[] = [0, -0.1, -1e-30];
    for (const t of [0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6]) vals.push(...around(t), ...around(-t));
    vals.push(...seeded(4000, 11, 6));
    const x = Float32Array.from(vals.map((v) => Math.max(-6, Math.min(6, v))));
    const ort = await elementwise('test.fp4', x, roundToFp4);
    expect(bits(ort)).toEqual(bits(x.map(roundFp4E2m1)));
  });

  test('MX scales: every binade from 2^-149 to 2^127, around 1, 1.75 and 2 of each, and zero', async () => {
    const vals: number[] = [0];
    for (let e = -149; e <= 127; e++) for (const m of [1, 1.5, 1.75]) vals.push(...around(m * 2 ** e).filter((v) => Number.isFinite(v) && v >= 0));
    const x = Float32Array.from(vals);
    const ort = await elementwise('test.mx', x, mxScale);
    expect(bits(ort)).toEqual(bits(x.map((v) => mxScaleValue(mxScaleByte(v)))));
  });
});

describe('activationFakeQuant equals fakeQuantizeActivations', () => {
  const T = 6;
  const cols = 172; // groups of 16, 32 and 128 leave a partial last group
  const x = seeded(T * cols, 3, 4);
  x.fill(0, cols, 2 * cols); // an all-zero token
  x[5] = 300; // an outlier
  const cases: [string, QuantArgs, Record<string, number>][] = [
    ['W8A8', presetScheme('W8A8', ['Linear']).input_activations!, {}],
    ['FP8_DYNAMIC', presetScheme('FP8_DYNAMIC', ['Linear']).input_activations!, {}],
    ['FP8', presetScheme('FP8', ['Linear']).input_activations!, { input_scale: Math.fround(250 / 448) }],
    ['FP8_BLOCK', presetScheme('FP8_BLOCK', ['Linear']).input_activations!, {}],
    ['NVFP4', presetScheme('NVFP4', ['Linear']).input_activations!, { input_global_scale: Math.fround(2688 / 280) }],
    ['MXFP4', presetScheme('MXFP4', ['Linear']).input_activations!, {}],
  ];
  for (const [name, a, statics] of cases) {
    test(`${name} input activations`, async () => {
      const k = await rt.kernel(`test.act:${name}`, () => {
        const g = new Graph('act');
        const inputs = new Map<string, Value>();
        const input = (n: string): Value => inputs.get(n) ?? inputs.set(n, g.input(n, 'float32', [1])).get(n)!;
        g.output(activationFakeQuant(g, g.input('x', 'float32', [1, T, cols]), a, cols, 'proj', input), 'y');
        return g;
      });
      const feeds = Object.fromEntries(Object.entries(statics).map(([n, v]) => [`proj.${n}`, tensor('float32', [1], Float32Array.of(v))]));
      const ort = (await k.run({ x: tensor('float32', [1, T, cols], x), ...feeds })).y!.data as Float32Array;
      const ref = fakeQuantizeActivations(x, T, cols, a, { inputScale: statics.input_scale, inputGlobalScale: statics.input_global_scale });
      expect(bits(ort)).toEqual(bits(ref));
      expect(bits(ref)).not.toEqual(bits(x));
    });
  }
});
