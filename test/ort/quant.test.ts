import { afterAll, describe, expect, test } from 'vitest';
import { fakeQuantizeActivationsPerToken } from '../../src/algo/fake-quant.js';
import { shrinkErrorsJs, shrinkProblem } from '../../src/algo/observers.js';
import { columnGroups, computeQParams, fakeQuantizeWeight, qRange, weightMinMax } from '../../src/quant/qparams.js';
import { Graph } from '../../src/ort/graph.js';
import { perTokenFakeQuant } from '../../src/graphs/act-quant.js';
import { fakeQuant, shrinkErrors } from '../../src/ort/kernels/quant.js';
import { Runtime } from '../../src/ort/session.js';
import type { Tensor } from '../../src/tensor.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

interface FakeQuantSpec {
  readonly qmin: number;
  readonly qmax: number;
  /** columns per scale column (group strategy); null for tensor and channel */
  readonly groupSize: number | null;
}

/**
 * fakeQuant run on its own: fq(w) for w [rows, cols] with scale and zero point [1 or rows, groups]; `gIdx` [cols] replaces
 * the contiguous group layout (actorder group).
 */
async function fakeQuantizeOrt(
  rt: Runtime,
  w: Float32Array,
  rows: number,
  cols: number,
  scale: Float32Array,
  zeroPoint: ArrayLike<number>,
  spec: FakeQuantSpec,
  gIdx?: Int32Array,
): Promise<Float32Array> {
  const groups = spec.groupSize === null ? 1 : Math.ceil(cols / spec.groupSize);
  const scaleRows = scale.length / groups;
  const mode = spec.groupSize === null ? 'bcast' : gIdx ? 'gidx' : `g${spec.groupSize}`;
  const kernel = await rt.kernel(`quant.fake:${spec.qmin}:${spec.qmax}:${mode}`, () => {
    const g = new Graph('fake_quant');
    const wv = g.input('w', 'float32', ['R', 'K']);
    const sv = g.input('scale', 'float32', ['S', 'G']);
    const zv = g.input('zero_point', 'float32', ['S', 'G']);
    const index = mode === 'gidx' ? g.input('g_idx', 'int64', ['K']) : spec.groupSize;
    g.output(fakeQuant(g, wv, sv, zv, spec.qmin, spec.qmax, index), 'y');
    return g;
  });
  const feeds: Record<string, Tensor> = {
    w: { dtype: 'float32', dims: [rows, cols], data: w },
    scale: { dtype: 'float32', dims: [scaleRows, groups], data: scale },
    zero_point: { dtype: 'float32', dims: [scaleRows, groups], data: Float32Array.from(zeroPoint) },
  };
  if (mode === 'gidx' && gIdx) feeds.g_idx = { dtype: 'int64', dims: [cols], data: BigInt64Array.from(gIdx, (v) => BigInt(v)) };
  const out = await kernel.run(feeds);
  return out.y?.data as Float32Array;
}

function weights(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * (1 + (i % 5));
  }
  return out;
}
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** a weight with exact ties (x / scale = k + 0.5 for a power-of-two scale) and both signed zeros */
function withTies(rows: number, cols: number): Float32Array {
  const w = weights(rows * cols, rows * 31 + cols);
  w.set([0.5, -0.5, 1.5, -2.5, 0, -0, 3.5, -0.03]);
  return w;
}

describe('fakeQuant graph', () => {
  const cases = [
    { name: 'tensor', strategy: 'tensor', group_size: null },
    { name: 'channel', strategy: 'channel', group_size: null },
    { name: 'group 128 on 300 columns (partial last group)', strategy: 'group', group_size: 128 },
    { name: 'group 32', strategy: 'group', group_size: 32 },
  ] as const;
  for (const c of cases) {
    for (const [num_bits, symmetric] of [[4, true], [4, false], [8, true], [8, false]] as const) {
      test(`is bit-identical to qparams.ts: ${c.name}, int${num_bits} ${symmetric ? 'sym' : 'asym'}`, async () => {
        const rows = 7;
        const cols = 300 - (c.group_size === 32 ? 12 : 0);
        const args = { num_bits, symmetric, strategy: c.strategy, group_size: c.group_size };
        const w = withTies(rows, cols);
        const { min, max } = weightMinMax(w, rows, cols, args);
        const qp = computeQParams(min, max, args);
        const js = fakeQuantizeWeight(w, rows, cols, qp, args);
        const { qmin, qmax } = qRange(num_bits);
        const ort = await fakeQuantizeOrt(rt, w, rows, cols, qp.scale, qp.zeroPoint, { qmin, qmax, groupSize: c.group_size });
        expect(bits(ort)).toEqual(bits(js));
      });
    }
  }

  test('is bit-identical with power-of-two scales, where every .5 is an exact tie', async () => {
    const w = Float32Array.of(0.5, 1.5, 2.5, -2.5, -0.5, -0, 0, 7.5, -8.5, 3.25);
    const args = { num_bits: 4, symmetric: true, strategy: 'channel', group_size: null } as const;
    const qp = { scale: Float32Array.of(1), zeroPoint: Int8Array.of(0) };
    const js = fakeQuantizeWeight(w, 1, 10, qp, args);
    const ort = await fakeQuantizeOrt(rt, w, 1, 10, qp.scale, qp.zeroPoint, { qmin: -8, qmax: 7, groupSize: null });
    expect(Array.from(js)).toEqual([0, 2, 2, -2, -0, 0, 0, 7, -8, 3]);
    expect(bits(ort)).toEqual(bits(js));
  });

  test('embedded with a group size and no zero point, it matches qparams.ts on symmetric groups', async () => {
    const rows = 4;
    const cols = 172;
    const args = { num_bits: 4, symmetric: true, strategy: 'group', group_size: 128 } as const;
    const w = withTies(rows, cols);
    const { min, max } = weightMinMax(w, rows, cols, args);
    const qp = computeQParams(min, max, args);
    const kernel = await rt.kernel('test.fq-sym-group', () => {
      const g = new Graph('fq_sym_group');
      const wv = g.input('w', 'float32', ['R', 'K']);
      const sv = g.input('scale', 'float32', ['R', 'G']);
      g.output(fakeQuant(g, wv, sv, null, -8, 7, 128), 'y');
      return g;
    });
    const out = await kernel.run({
      w: { dtype: 'float32', dims: [rows, cols], data: w },
      scale: { dtype: 'float32', dims: [rows, 2], data: qp.scale },
    });
    expect(bits(out.y!.data as Float32Array)).toEqual(bits(fakeQuantizeWeight(w, rows, cols, qp, args)));
  });

  test('follows g_idx like qparams.ts', async () => {
    const rows = 5;
    const cols = 96;
    const args = { num_bits: 4, symmetric: false, strategy: 'group', group_size: 32 } as const;
    const w = withTies(rows, cols);
    const { min, max } = weightMinMax(w, rows, cols, args);
    const qp = computeQParams(min, max, args);
    const gIdx = Int32Array.from({ length: cols }, (_, j) => (j * 7) % 3);
    const js = fakeQuantizeWeight(w, rows, cols, qp, args, gIdx);
    const ort = await fakeQuantizeOrt(rt, w, rows, cols, qp.scale, qp.zeroPoint, { qmin: -8, qmax: 7, groupSize: 32 }, gIdx);
    expect(bits(ort)).toEqual(bits(js));
    expect(bits(ort)).not.toEqual(bits(fakeQuantizeWeight(w, rows, cols, qp, args, columnGroups(cols, args))));
  });

  test('perTokenFakeQuant (the decoder graph\'s) is bit-identical to fakeQuantizeActivationsPerToken', async () => {
    const rows = 9;
    const cols = 40;
    const x = withTies(rows, cols);
    const kernel = await rt.kernel('test.per-token', () => {
      const g = new Graph('per_token');
      g.output(perTokenFakeQuant(g, g.input('x', 'float32', ['R', 'C']), 8), 'y');
      return g;
    });
    const out = await kernel.run({ x: { dtype: 'float32', dims: [rows, cols], data: x } });
    expect(bits(out.y!.data as Float32Array)).toEqual(bits(fakeQuantizeActivationsPerToken(x, rows, cols)));
  });
});

describe('shrinkErrors', () => {
  function candidates(problem: ReturnType<typeof shrinkProblem>, w: Float32Array, rows: number, cols: number, args: Parameters<typeof weightMinMax>[3] & { num_bits: number; symmetric: boolean }, count: number) {
    const { min, max } = weightMinMax(w, rows, cols, args);
    const n = min.length;
    const cmin = new Float32Array(count * n);
    const cmax = new Float32Array(count * n);
    for (let c = 0; c < count; c++) for (let k = 0; k < n; k++) {
      const p = Math.fround(1 - c / 100);
      cmin[c * n + k] = Math.fround((min[k] as number) * p);
      cmax[c * n + k] = Math.fround((max[k] as number) * p);
    }
    const qp = computeQParams(cmin, cmax, args);
    expect(n).toBe(problem.rows * problem.groups);
    return { scale: qp.scale, zp: Float32Array.from(qp.zeroPoint) };
  }

  test('matches the JS reference for a padded partial group', async () => {
    const rows = 6;
    const cols = 172;
    const args = { num_bits: 4, symmetric: false, strategy: 'group', group_size: 128, observer: 'mse', observer_kwargs: {} } as const;
    const w = weights(rows * cols, 5);
    const problem = shrinkProblem(w, rows, cols, args, 2.4);
    expect(problem.w.length).toBe(rows * 2 * 128);
    const { scale, zp } = candidates(problem, w, rows, cols, args, 4);
    const ort = await shrinkErrors(rt, problem, scale, zp, 4);
    const js = shrinkErrorsJs(problem, scale, zp, 4);
    expect(ort.length).toBe(4 * rows * 2);
    for (let i = 0; i < js.length; i++) expect(ort[i]).toBeCloseTo(js[i] as number, 3);
  });

  test('splits large problems into row chunks without changing the result', async () => {
    const rows = 1100;
    const cols = 4096;
    const args = { num_bits: 8, symmetric: true, strategy: 'channel', group_size: null, observer: 'mse', observer_kwargs: {} } as const;
    const w = weights(rows * cols, 6);
    const problem = shrinkProblem(w, rows, cols, args, 2);
    const { scale, zp } = candidates(problem, w, rows, cols, args, 4);
    const ort = await shrinkErrors(rt, problem, scale, zp, 4);
    const js = shrinkErrorsJs(problem, scale, zp, 4);
    let worst = 0;
    for (let i = 0; i < js.length; i++) worst = Math.max(worst, Math.abs((ort[i] as number) - (js[i] as number)) / Math.max(1e-12, js[i] as number));
    expect(worst).toBeLessThan(1e-4);
  });
});
