// Kernel options that change how onnxruntime runs a session, not what it computes: `spin: false` (threads
// sleep between ops), `arena: true` (freed buffers kept for the next call), `pattern: false` (no memory
// pattern planned from the first call); Kernel.run's `into` (outputs
// written into given tensors); and Runtime.release, which drops memoised kernels (their sessions and arenas)
// by key prefix so the next use builds them again.

import { afterAll, describe, expect, test } from 'vitest';
import { Graph } from '../../src/ort/graph.js';
import { Runtime } from '../../src/ort/session.js';
import { tensor } from '../../src/tensor.js';
import { random } from '../fixtures/random.js';

const rt = new Runtime({ device: 'cpu', threads: 2 });
afterAll(() => rt.close());

/** y = softmax(x·xᵀ)·x summed per row: a few ops with intermediates larger than the input */
function graph(): Graph {
  const g = new Graph('session_options');
  const x = g.input('x', 'float32', ['M', 'N']);
  const probs = g.op('Softmax', [g.matmul(x, g.transpose(x, [1, 0]))], { axis: -1 });
  g.output(g.reduceSum(g.matmul(probs, x), [1], false), 'y', ['M']);
  return g;
}

describe('kernel options', () => {
  test('a kernel whose threads sleep and whose buffers stay in an arena computes what the default kernel does, call after call', async () => {
    const plain = await rt.kernel('options.plain', graph);
    const tuned = await rt.kernel('options.tuned', graph, { spin: false, arena: true });
    const unplanned = await rt.kernel('options.tuned', graph, { spin: false, arena: true, pattern: false });
    expect(tuned).not.toBe(plain);
    expect(unplanned).not.toBe(tuned);
    for (const [m, n] of [[300, 40], [120, 40], [300, 40], [300, 40]] as const) {
      const feeds = { x: tensor('float32', [m, n], random(m * n, m + n)) };
      const want = (await plain.run(feeds))['y']!.data as Float32Array;
      for (const k of [tuned, unplanned]) expect(Array.from((await k.run(feeds))['y']!.data as Float32Array)).toEqual(Array.from(want));
    }
  });

  test('the options are part of the memo: the same key with other options is another session', async () => {
    const a = await rt.kernel('options.memo', graph, { spin: false });
    expect(await rt.kernel('options.memo', graph, { spin: false })).toBe(a);
    expect(await rt.kernel('options.memo', graph)).not.toBe(a);
    expect(await rt.kernel('options.memo', graph, { spin: false, arena: true })).not.toBe(a);
  });
});

describe('Runtime.release', () => {
  test('drops the kernels whose key starts with the prefix, and only those', async () => {
    let builds = 0;
    const build = (): Graph => {
      builds++;
      return graph();
    };
    const kept = await rt.kernel('other.kernel', build);
    await rt.kernel('release.a', build, { arena: true });
    await rt.kernel('release.b', build);
    expect(builds).toBe(3);
    await rt.release('release.');
    const again = await rt.kernel('release.a', build, { arena: true });
    await rt.kernel('release.b', build);
    expect(builds).toBe(5);
    expect(await rt.kernel('other.kernel', build)).toBe(kept);
    expect(builds).toBe(5);
    const x = tensor('float32', [8, 4], random(32, 3));
    expect(Array.from((await again.run({ x }))['y']!.data as Float32Array)).toEqual(Array.from((await kept.run({ x }))['y']!.data as Float32Array));
  });
});

describe('Kernel.run into', () => {
  /** y = xᵀ·x for x [m, 2] (a Gram, as GPTQ's capture taps compute) */
  const gram = (): Graph => {
    const g = new Graph('gram');
    const x = g.input('x', 'float32', ['M', 2]);
    g.output(g.matmul(g.transpose(x, [1, 0]), x), 'y');
    return g;
  };

  test('the output lands in the given tensor, which run returns, call after call', async () => {
    const k = await rt.kernel('test.gram:2', gram, { spin: false });
    const buf = tensor('float32', [2, 2], new Float32Array(4));
    const out = await k.run({ x: tensor('float32', [3, 2], Float32Array.of(1, 2, 3, 4, 5, 6)) }, undefined, { y: buf });
    expect(out['y']).toBe(buf);
    // xᵀx by hand: [[1+9+25, 2+12+30], [2+12+30, 4+16+36]]
    expect(Array.from(buf.data)).toEqual([35, 44, 44, 56]);
    await k.run({ x: tensor('float32', [1, 2], Float32Array.of(1, -1)) }, undefined, { y: buf });
    expect(Array.from(buf.data)).toEqual([1, -1, -1, 1]);
  });
});
