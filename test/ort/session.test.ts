import { afterAll, describe, expect, test } from 'vitest';
import { Graph } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor } from '../../src/tensor.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

const matmul = (): Graph => {
  const g = new Graph('matmul');
  g.output(g.matmul(g.input('a', 'float32', ['M', 'K']), g.input('b', 'float32', ['K', 'N'])), 'c');
  return g;
};
const values = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed));

describe('Runtime kernels', () => {
  test('a kernel whose threads do not spin is its own session and computes the same outputs', async () => {
    const [spinning, sleeping] = [await rt.kernel('test.matmul', matmul), await rt.kernel('test.matmul', matmul, { spinning: false })];
    expect(sleeping).not.toBe(spinning);
    expect(await rt.kernel('test.matmul', matmul, { spinning: false })).toBe(sleeping);
    const feeds = { a: tensor('float32', [64, 96], values(64 * 96, 1)), b: tensor('float32', [96, 80], values(96 * 80, 2)) };
    const [x, y] = [(await spinning.run(feeds))['c']!, (await sleeping.run(feeds))['c']!];
    expect(Buffer.from((y.data as Float32Array).buffer).equals(Buffer.from((x.data as Float32Array).buffer))).toBe(true);
  });

  test('outputs given in `into` are written in place and returned as given', async () => {
    const k = await rt.kernel('test.matmul', matmul, { spinning: false });
    const feeds = { a: tensor('float32', [8, 16], values(8 * 16, 3)), b: tensor('float32', [16, 4], values(16 * 4, 4)) };
    const want = (await k.run(feeds))['c']!;
    const into = tensor('float32', [8, 4], new Float32Array(32).fill(Number.NaN));
    const got = (await k.run(feeds, ['c'], { c: into }))['c']!;
    expect(got).toBe(into);
    expect([...into.data]).toEqual([...(want.data as Float32Array)]);
  });
});
