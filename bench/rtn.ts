// Round-to-nearest of one weight: the JavaScript path (quant/qparams.ts) against the onnxruntime graph
// (ort/kernels/rtn.ts), cold (a Runtime that has not seen the shape: graph build + session + run, what a step
// pays the first time it meets a shape) and warm (the memoised session). Picks algo/fake-quant.ts's
// RTN_KERNEL_MIN_VALUES: below it the JavaScript path is faster even when each shape repeats over a model's
// layers. Usage: npx tsx bench/rtn.ts [--runs N] [--small]

import { loadavg } from 'node:os';
import { quantizeWeightRtnJs, rtnKernelArgs, RTN_KERNEL_MIN_VALUES } from '../src/algo/fake-quant.js';
import { rtnMinMax } from '../src/ort/kernels/rtn.js';
import { Runtime } from '../src/ort/session.js';
import { presetScheme } from '../src/quant/scheme.js';
import { seededRandom } from '../src/random.js';
import { median, table } from './util.js';

const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
// wiki-llama-8m's Linears, then larger ones (a 1B model's q_proj and MLP)
const SHAPES: [number, number][] = process.argv.includes('--small') ? [[96, 288], [288, 288], [768, 288], [288, 768], [1024, 1024]] : [[96, 288], [288, 288], [768, 288], [288, 768], [1024, 1024], [2048, 2048], [5632, 2048], [4096, 4096]];
const SCHEMES = ['W4A16', 'W8A8', 'W4A16_ASYM'] as const;

const time = async (f: () => Promise<unknown>): Promise<number> => {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
};

const rows: string[][] = [];
const load = loadavg()[0] as number;
for (const scheme of SCHEMES) {
  const args = presetScheme(scheme, ['Linear']).weights!;
  for (const [r, c] of SHAPES) {
    const rand = seededRandom(r * 31 + c);
    const w = Float32Array.from({ length: r * c }, () => (rand() - 0.5) * 0.1);
    const kernel = rtnKernelArgs(args, c)!;
    const js: number[] = [];
    const cold: number[] = [];
    const warm: number[] = [];
    await quantizeWeightRtnJs(w, r, c, args); // compiled by the JIT, as after a model's first layers
    for (let i = 0; i < RUNS; i++) {
      js.push(await time(() => quantizeWeightRtnJs(w, r, c, args)));
      const rt = new Runtime({ device: 'cpu' });
      cold.push(await time(() => rtnMinMax(rt, w, r, c, kernel)));
      warm.push(await time(() => rtnMinMax(rt, w, r, c, kernel)));
      await rt.close();
    }
    const [j, k0, k1] = [median(js), median(cold), median(warm)];
    rows.push([scheme, `${r}×${c}`, String(r * c), j.toFixed(2), k0.toFixed(2), k1.toFixed(2), (j / k0).toFixed(2), (j / k1).toFixed(2), r * c >= RTN_KERNEL_MIN_VALUES ? 'onnxruntime' : 'JavaScript']);
    console.log(rows.at(-1)!.join('  '));
  }
}
console.log(`\nmedian of ${RUNS} runs, load average ${load.toFixed(1)} at the start\n`);
console.log(table(['scheme', 'shape', 'values', 'JS ms', 'ORT cold ms', 'ORT warm ms', 'JS / cold', 'JS / warm', 'quantizeWeightRtn uses'], rows));
