import { afterAll, describe, expect, test } from 'vitest';
import { AutodiffError, gradients } from '../../src/ort/autodiff.js';
import { Graph, type Value } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import { inferFacts } from '../../src/ort/shape-infer.js';
import { f64 } from './autodiff-harness.js';

const rt = new Runtime({ device: 'cpu', threads: 1 });
afterAll(() => rt.close());

const vec = (data: number[]) => ({ dtype: 'float64' as const, dims: [data.length], data: Float64Array.from(data) });
const plain = (t: { data: unknown }): number[] => [...(t.data as Float64Array)].map((v) => v + 0);

async function run(g: Graph, outputs: Value[], feeds: Record<string, ReturnType<typeof vec>>): Promise<number[][]> {
  outputs.forEach((v, i) => g.output(v, `out${i}`));
  const k = await rt.kernel(`${g.name}-${Math.random()}`, () => g);
  const r = await k.run(feeds);
  return outputs.map((_, i) => plain(r[`out${i}`]!));
}

describe('gradients', () => {
  test('a non-scalar loss without a seed is seeded with ones', async () => {
    const g = new Graph('seed');
    const x = g.input('x', 'float64', [3]);
    const [gx] = gradients(g, g.mul(x, x), [x]);
    const [out] = await run(g, [gx!], { x: vec([1, -2, 0.5]) });
    expect(out).toEqual([2, -4, 1]);
  });

  test('stopped Values are treated as constants', async () => {
    const g = new Graph('stop');
    const x = g.input('x', 'float64', [3]);
    const held = g.op('Identity', [x]);
    const [gx] = gradients(g, g.mul(x, held), [x], { stop: [held] });
    const [out] = await run(g, [gx!], { x: vec([1, -2, 0.5]) });
    expect(out).toEqual([1, -2, 0.5]);
  });

  test('a Value the loss does not depend on gets a zero gradient of its shape', async () => {
    const g = new Graph('zeros');
    const x = g.input('x', 'float64', [3]);
    const w = g.input('w', 'float64', [2]);
    const [gx, gw] = gradients(g, g.reduceSum(g.mul(x, x), [0]), [x, w]);
    const [ox, ow] = await run(g, [gx!, gw!], { x: vec([1, 2, 3]), w: vec([5, 6]) });
    expect(ox).toEqual([2, 4, 6]);
    expect(ow).toEqual([0, 0]);
  });

  test('branches off the path from wrt to the loss get no backward nodes', () => {
    const build = (extra: boolean): number => {
      const g = new Graph('prune');
      const x = g.input('x', 'float64', [4]);
      const c = g.input('c', 'float64', [4]);
      let loss = g.reduceSum(g.mul(x, x), [0]);
      // a constant-only branch feeding the loss, and a branch of x that never reaches it
      if (extra) {
        loss = g.add(loss, g.reduceSum(g.op('Softmax', [g.op('Exp', [c])]), [0]));
        g.output(g.op('Exp', [x]), 'side');
      }
      const before = g.nodes.length;
      gradients(g, loss, [x]);
      return g.nodes.length - before;
    };
    expect(build(true)).toBe(build(false));
  });

  test('an op without a rule on the path to the loss is refused with the supported list', () => {
    const g = new Graph('unsupported');
    const x = g.input('x', 'float64', [4]);
    const loss = g.reduceSum(g.op('Erf', [x]), [0]);
    let error: unknown;
    try {
      gradients(g, loss, [x]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AutodiffError);
    expect((error as AutodiffError).reason).toBe('autodiff-unsupported-op');
    expect((error as AutodiffError).message).toMatch(/"Erf".*supported: .*MatMul/);
  });

  test('an op without a rule off the path to the loss is fine', () => {
    const g = new Graph('unsupported-off-path');
    const x = g.input('x', 'float64', [4]);
    const c = g.input('c', 'float64', [4]);
    const loss = g.reduceSum(g.mul(x, g.op('Erf', [c])), [0]);
    expect(() => gradients(g, loss, [x])).not.toThrow();
  });

  test('a Value from another graph is refused', () => {
    const g = new Graph('a');
    const x = g.input('x', 'float64', [4]);
    const other = new Graph('b').input('y', 'float64', [4]);
    expect(() => gradients(g, g.reduceSum(x, [0]), [other])).toThrow(expect.objectContaining({ reason: 'autodiff-bad-argument' }));
  });

  test('gradients can be taken twice in one graph, the second pass over the first one\'s nodes', async () => {
    const g = new Graph('twice');
    const x = g.input('x', 'float64', [3]);
    const cube = g.mul(g.mul(x, x), x);
    const [d1] = gradients(g, cube, [x]);
    const [d2] = gradients(g, d1!, [x]);
    const [o1, o2] = await run(g, [d1!, d2!], { x: vec([1, 2, -1]) });
    expect(o1).toEqual([3, 12, 3]);
    expect(o2).toEqual([6, 12, -6]);
  });
});

describe('inferFacts', () => {
  test('propagates symbolic dims through reshape with 0 and -1, transpose and matmul', () => {
    const g = new Graph('facts');
    const x = g.input('x', 'float32', ['batch', 'seq', 16]);
    const heads = g.transpose(g.reshape(x, [0, 0, 2, 8]), [0, 2, 1, 3]);
    const grouped = g.reshape(heads, [0, 1, 2, -1, 8]);
    const scores = g.matmul(grouped, g.transpose(g.op('Unsqueeze', [heads, g.ints([2])]), [0, 1, 2, 4, 3]));
    const facts = inferFacts(g);
    expect(facts.get(heads.name)?.shape).toEqual(['batch', 2, 'seq', 8]);
    expect(facts.get(grouped.name)?.shape).toEqual(['batch', 1, 2, 'seq', 8]);
    expect(facts.get(scores.name)?.shape).toEqual(['batch', 2, 2, 'seq', 'seq']);
    expect(facts.get(scores.name)?.dtype).toBe('float32');
  });

  test('knows the contents of shape vectors built from Shape, Gather and Concat', () => {
    const g = new Graph('values');
    const x = g.input('x', 'float32', ['batch', 7]);
    const shape = g.op('Shape', [x], {}, { dtype: 'int64' });
    const rows = g.op('Gather', [shape, g.ints([0])], { axis: 0 });
    const target = g.op('Concat', [rows, g.ints([7, 1])], { axis: 0 });
    const y = g.op('Expand', [g.op('Unsqueeze', [x, g.ints([-1])]), target]);
    const facts = inferFacts(g);
    expect(facts.get(target.name)?.value).toEqual(['batch', 7, 1]);
    expect(facts.get(y.name)?.shape).toEqual(['batch', 7, 1]);
    expect(facts.get(shape.name)?.dtype).toBe('int64');
  });

  test('leaves undecidable dims unknown instead of guessing', () => {
    const g = new Graph('unknown');
    const a = g.input('a', 'float32', ['n', 4]);
    const b = g.input('b', 'float32', ['m', 4]);
    const sum = g.add(a, b);
    const flat = g.reshape(g.input('c', 'float32', ['n', 'm']), [-1]);
    const facts = inferFacts(g);
    expect(facts.get(sum.name)?.shape).toEqual([null, 4]);
    expect(facts.get(flat.name)?.shape).toEqual([null]);
  });

  test('types comparison outputs as bool and Where by its branches', () => {
    const g = new Graph('types');
    const x = g.input('x', 'float64', [3]);
    const cond = g.op('Less', [x, f64(g, 0)]);
    const y = g.op('Where', [cond, x, f64(g, 1)]);
    const facts = inferFacts(g);
    expect(facts.get(cond.name)?.dtype).toBe('bool');
    expect(facts.get(y.name)?.dtype).toBe('float64');
  });
});
