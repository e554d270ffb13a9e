import { afterAll, describe, expect, test } from 'vitest';
import type { Graph, Value } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import { checkGradients, type GradCase, type InputSpec } from './autodiff-harness.js';

const rt = new Runtime({ device: 'cpu', threads: 1 });
afterAll(() => rt.close());

const one = (spec: InputSpec, build: (g: Graph, x: Value) => Value): GradCase => ({ inputs: { x: spec }, build: (g, x) => build(g, x.x!) });
const mm = (a: InputSpec, b: InputSpec): GradCase => ({ inputs: { a, b }, build: (g, x) => g.matmul(x.a!, x.b!) });
const slice = (g: Graph, x: Value, s: number[], e: number[], axes: number[]): Value => g.op('Slice', [x, g.ints(s), g.ints(e), g.ints(axes)]);
const distinct = (n: number): number[] => Array.from({ length: n }, (_, i) => ((i * 7) % n) / n - 0.5);

const CASES: Record<string, GradCase> = {
  'MatMul of two matrices': mm({ shape: [3, 4] }, { shape: [4, 5] }),
  'MatMul of 3-D activations and a 2-D weight': mm({ shape: [2, 3, 4] }, { shape: [4, 5] }),
  'MatMul of 4-D activations and a 2-D weight': mm({ shape: [2, 2, 3, 4] }, { shape: [4, 5] }),
  'MatMul of a 2-D weight and 3-D activations': mm({ shape: [3, 4] }, { shape: [2, 4, 5] }),
  'MatMul with batch broadcasting on both sides': mm({ shape: [2, 1, 3, 4] }, { shape: [3, 4, 2] }),
  'MatMul of a vector and a batch of matrices': mm({ shape: [4] }, { shape: [2, 4, 3] }),
  'MatMul of a batch of matrices and a vector': mm({ shape: [2, 3, 4] }, { shape: [4] }),
  'MatMul of two vectors': mm({ shape: [4] }, { shape: [4] }),
  'MatMul of x and a transposed weight (Linear)': {
    inputs: { x: { shape: [2, 3, 4] }, w: { shape: [5, 4] } },
    build: (g, x) => g.matmul(x.x!, g.transpose(x.w!, [1, 0])),
  },
  'ReduceSum over one axis': one({ shape: [2, 3, 4] }, (g, x) => g.reduceSum(x, [1], false)),
  'ReduceSum over all axes': one({ shape: [2, 3] }, (g, x) => g.op('ReduceSum', [x], { keepdims: 0 })),
  'ReduceMean keeping dims': one({ shape: [2, 3, 4] }, (g, x) => g.reduceMean(x, [-1], true)),
  'ReduceMean over two axes': one({ shape: [2, 3, 4] }, (g, x) => g.reduceMean(x, [0, 2], false)),
  'ReduceMax over one axis': one({ shape: [3, 4], data: distinct(12) }, (g, x) => g.reduceMax(x, [1], false)),
  'ReduceMin over all axes': one({ shape: [3, 4], data: distinct(12) }, (g, x) => g.op('ReduceMin', [x], { keepdims: 1 })),
  'Softmax along the last axis': one({ shape: [2, 3, 5] }, (g, x) => g.op('Softmax', [x], { axis: -1 })),
  'Softmax along axis 1': one({ shape: [2, 3, 5] }, (g, x) => g.op('Softmax', [x], { axis: 1 })),
  'LogSoftmax': one({ shape: [3, 5] }, (g, x) => g.op('LogSoftmax', [x], { axis: -1 })),
  'Transpose': one({ shape: [2, 3, 4] }, (g, x) => g.transpose(x, [2, 0, 1])),
  'Transpose without a permutation': one({ shape: [2, 3, 4] }, (g, x) => g.op('Transpose', [x])),
  'Reshape with 0 and -1': one({ shape: [2, 3, 4] }, (g, x) => g.reshape(x, [0, -1, 2])),
  'Unsqueeze': one({ shape: [2, 3] }, (g, x) => g.op('Unsqueeze', [x, g.ints([0, 3])])),
  'Squeeze': one({ shape: [2, 1, 3] }, (g, x) => g.op('Squeeze', [x, g.ints([1])])),
  'Flatten': one({ shape: [2, 3, 4] }, (g, x) => g.op('Flatten', [x], { axis: 2 })),
  'Expand of size-1 and missing axes': one({ shape: [3, 1] }, (g, x) => g.op('Expand', [x, g.ints([2, 3, 4])])),
  'Slice of the first half of the last axis': one({ shape: [2, 3, 8] }, (g, x) => slice(g, x, [0], [4], [-1])),
  'Slice with a negative start and a clamped end': one({ shape: [2, 6] }, (g, x) => slice(g, x, [-4, 0], [1_000_000, 1], [1, 0])),
  'RoPE rotate_half via Slice, Neg and Concat': {
    inputs: { x: { shape: [2, 3, 8] }, cos: { shape: [3, 8], wrt: false }, sin: { shape: [3, 8], wrt: false } },
    build: (g, v) => {
      const x = v.x!;
      const rot = g.op('Concat', [g.op('Neg', [slice(g, x, [4], [8], [-1])]), slice(g, x, [0], [4], [-1])], { axis: -1 });
      return g.add(g.mul(x, v.cos!), g.mul(rot, v.sin!));
    },
  },
  'Concat of three inputs': {
    inputs: { a: { shape: [2, 1] }, b: { shape: [2, 3] }, c: { shape: [2, 2] } },
    build: (g, x) => g.op('Concat', [x.a!, x.b!, x.c!], { axis: 1 }),
  },
  'Split into uneven parts, one unused': {
    inputs: { x: { shape: [2, 5] } },
    build: (g, x) => {
      const [p, , r] = g.opN('Split', [x.x!, g.ints([2, 1, 2])], 3, { axis: 1 });
      return g.mul(p!, r!);
    },
  },
  'Gather of embedding rows with repeats': {
    inputs: { x: { shape: [4, 3] }, ids: { shape: [2, 3], dtype: 'int64', data: [0, 2, 2, 3, 0, 0] } },
    build: (g, x) => g.op('Gather', [x.x!, x.ids!], { axis: 0 }),
  },
  'Pad with zeros on two axes': one({ shape: [2, 3] }, (g, x) => g.op('Pad', [x, g.ints([1, 0, 0, 2])])),
};

describe('gradients of shape, reduction and matmul ops', () => {
  for (const [name, c] of Object.entries(CASES)) {
    test(`${name} agrees with central differences`, async () => {
      const check = await checkGradients(rt, c);
      for (const [input, err] of Object.entries(check.relErr)) expect(err, input).toBeLessThan(1e-6);
    });
  }

  test('ReduceMax splits the gradient evenly between tied maxima', async () => {
    const check = await checkGradients(rt, one({ shape: [2, 3], data: [1, 3, 3, 2, 0, 1] }, (g, x) => g.reduceMax(x, [1], false)));
    const r = check.seed;
    expect([...check.analytic.x!].map((v) => v + 0)).toEqual([0, r[0]! / 2, r[0]! / 2, r[1]!, 0, 0]);
  });
});

describe('gradients with symbolic dims', () => {
  test('broadcast axes undecidable at build time are reduced at run time', async () => {
    const check = await checkGradients(rt, {
      inputs: { a: { shape: ['n', 4], dims: [1, 4] }, b: { shape: ['m', 4], dims: [3, 4] } },
      build: (g, x) => g.mul(x.a!, x.b!),
    });
    expect(check.analytic.a!.length).toBe(4);
    expect(check.graph.nodes.some((n) => n.opType === 'NonZero')).toBe(true);
    for (const err of Object.values(check.relErr)) expect(err).toBeLessThan(1e-6);
  });

  test('Slice, Concat and MatMul over symbolic batch and sequence dims', async () => {
    const check = await checkGradients(rt, {
      inputs: { x: { shape: ['batch', 'seq', 8], dims: [2, 3, 8] }, w: { shape: [8, 8] } },
      build: (g, v) => {
        const y = g.matmul(v.x!, v.w!);
        const halves = [slice(g, y, [0], [4], [-1]), g.op('Slice', [y, g.ints([4]), g.ints([1_000_000]), g.ints([2])])];
        return g.op('Concat', [g.op('Neg', [halves[1]!]), halves[0]!], { axis: -1 });
      },
    });
    // every broadcast axis is decidable from the symbolic shapes: no run-time axis search
    expect(check.graph.nodes.some((n) => n.opType === 'NonZero')).toBe(false);
    for (const err of Object.values(check.relErr)) expect(err).toBeLessThan(1e-6);
  });

  test('Concat along a symbolic axis splits the gradient by run-time sizes', async () => {
    const check = await checkGradients(rt, {
      inputs: { a: { shape: ['n', 2], dims: [3, 2] }, b: { shape: ['m', 2], dims: [1, 2] } },
      build: (g, x) => g.mul(g.op('Concat', [x.a!, x.b!], { axis: 0 }), g.op('Concat', [x.b!, x.a!], { axis: -2 })),
    });
    expect(check.graph.nodes.filter((n) => n.opType === 'Shape').length).toBeGreaterThan(0);
    for (const err of Object.values(check.relErr)) expect(err).toBeLessThan(1e-6);
  });

  test('Slice with a run-time end is padded back at run time', async () => {
    const check = await checkGradients(rt, {
      inputs: { x: { shape: ['n', 6], dims: [3, 6] }, ref: { shape: ['n', 2], dims: [3, 2], wrt: false } },
      build: (g, v) => {
        const end = g.op('Shape', [v.ref!], {}, { dtype: 'int64' });
        return g.op('Slice', [v.x!, g.ints([0, 1]), end, g.ints([0, 1])]);
      },
    });
    expect(check.relErr.x).toBeLessThan(1e-6);
  });
});
