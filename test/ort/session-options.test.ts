import { afterAll, describe, expect, test } from 'vitest';
import { Graph } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor } from '../../src/tensor.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

/** y = xᵀ·x for x [m, n] (a Gram, as GPTQ's capture taps compute) */
const gramGraph = (n: number) => () => {
  const g = new Graph('gram');
  const x = g.input('x', 'float32', ['M', n]);
  g.output(g.matmul(g.transpose(x, [1, 0]), x), 'y');
  return g;
};

describe('kernel options', () => {
  const x = tensor('float32', [3, 2], Float32Array.of(1, 2, 3, 4, 5, 6));
  // xᵀx by hand: [[1+9+25, 2+12+30], [2+12+30, 4+16+36]]
  const want = [35, 44, 44, 56];

  test('spin: false is its own session (onnxruntime accepts the flat config key) and computes the same values', async () => {
    const spinning = await rt.kernel('test.gram:2', gramGraph(2));
    const sleeping = await rt.kernel('test.gram:2', gramGraph(2), { spin: false });
    expect(sleeping).not.toBe(spinning);
    expect(await rt.kernel('test.gram:2', gramGraph(2), { spin: false })).toBe(sleeping);
    expect(Array.from((await sleeping.run({ x }))['y']!.data as Float32Array)).toEqual(want);
    expect(Array.from((await spinning.run({ x }))['y']!.data as Float32Array)).toEqual(want);
  });

  test('into: the output lands in the given tensor, which run returns, call after call', async () => {
    const k = await rt.kernel('test.gram:2', gramGraph(2), { spin: false });
    const buf = tensor('float32', [2, 2], new Float32Array(4));
    const out = await k.run({ x }, undefined, { y: buf });
    expect(out['y']).toBe(buf);
    expect(Array.from(buf.data)).toEqual(want);
    await k.run({ x: tensor('float32', [1, 2], Float32Array.of(1, -1)) }, undefined, { y: buf });
    expect(Array.from(buf.data)).toEqual([1, -1, -1, 1]);
  });
});
