// Where GPTQ's codes on another provider start to differ from the CPU's (docs/devices.md, "The quick start on
// webgpu"). Runs a GPTQ recipe (default: the quick start's stages and calibration, no outputs) on cpu and on the
// provider, then compares per layer:
//   chained    each provider's own run (a layer's calibration inputs are its own earlier layers' outputs)
//   per step   the CPU run's layer step run again on the provider from the CPU's cached inputs
// and, with --shards 2 (parallel.calibration_shards: the XᵀX capture is its own step), the Hessian partials the
// provider captures from the CPU's inputs against the CPU's, and the gptq solve run on the provider from the
// CPU's Hessians (its column loop runs on the CPU provider either way: float64 host kernels).
//   npx tsx bench/device-gptq.ts [--provider webgpu] [--shards 2] [--no-chained] [--recipe examples/quickstart/recipe.yaml]

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SafetensorsFile } from '../src/formats/safetensors.js';
import { Runtime, type Provider } from '../src/ort/session.js';
import { HESSIAN_FILE } from '../src/steps/hessian-partials.js';
import { HIDDEN_FILE } from '../src/steps/activations.js';
import { diffCodes, rerunStep, runOn, sameInputs, share, type DeviceRun } from '../test/e2e/device-steps.js';

const { values } = parseArgs({
  options: {
    provider: { type: 'string', default: 'webgpu' },
    shards: { type: 'string', default: '1' },
    recipe: { type: 'string', default: 'examples/quickstart/recipe.yaml' },
    /** --no-chained: only the per-step comparisons (the provider's own run of the whole recipe is the slow part) */
    chained: { type: 'boolean', default: true },
  },
  allowNegative: true,
});
const provider = values.provider as Provider;
const shards = Number(values.shards);

/** the recipe without its outputs (and with the shards asked for), written into `dir` */
function recipeCopy(dir: string): string {
  const text = readFileSync(resolve(values.recipe), 'utf8').split('\noutputs:')[0]!;
  const path = join(dir, 'recipe.yaml');
  writeFileSync(path, `${text}\n${shards > 1 ? `parallel: { calibration_shards: ${shards} }\n` : ''}`);
  return path;
}

/** largest |a − b| over every float tensor of two safetensors files, absolute and relative to the largest |a| */
async function tensorDiff(fileA: string, fileB: string): Promise<{ abs: number; rel: number; diagRel: number }> {
  const [fa, fb] = [await SafetensorsFile.open(fileA), await SafetensorsFile.open(fileB)];
  let abs = 0;
  let scale = 0;
  let diagRel = 0;
  try {
    for (const name of fa.tensors.keys()) {
      const [ta, tb] = [await fa.read(name), await fb.read(name)];
      if (ta.dtype !== 'float32' && ta.dtype !== 'float64') continue;
      const square = ta.dims.length === 2 && ta.dims[0] === ta.dims[1] ? (ta.dims[0] as number) : 0;
      for (let i = 0; i < ta.data.length; i++) {
        const [x, y] = [Number(ta.data[i]), Number(tb.data[i])];
        abs = Math.max(abs, Math.abs(x - y));
        scale = Math.max(scale, Math.abs(x));
        if (square && i % (square + 1) === 0 && x !== 0) diagRel = Math.max(diagRel, Math.abs(x - y) / Math.abs(x));
      }
    }
  } finally {
    await fa.close();
    await fb.close();
  }
  return { abs, rel: scale ? abs / scale : abs, diagRel };
}

const ids = (run: DeviceRun, kind: string): string[] => [...run.requests.values()].filter((r) => r.kind === kind).map((r) => r.id);

const dir = mkdtempSync(join(tmpdir(), 'qf-device-gptq-'));
const cache = join(dir, 'cache');
const path = recipeCopy(dir);
const cpu = new Runtime({ device: 'cpu' });
const other = new Runtime({ device: provider });
let t = performance.now();
const a = await runOn(cpu, cpu, path, cache);
console.log(`cpu run ${((performance.now() - t) / 1000).toFixed(1)} s`);
t = performance.now();
const b = values.chained ? await runOn(other, cpu, path, cache) : undefined;
const ppl = (r: DeviceRun): string => `fp ${r.metrics.perplexity.fp} quantized ${r.metrics.perplexity.quantized}`;
if (b) console.log(`${provider} run ${((performance.now() - t) / 1000).toFixed(1)} s; perplexity cpu ${ppl(a)}; ${provider} ${ppl(b)}`);

for (const id of ids(a, 'gptq-hessian')) {
  const again = (await rerunStep(a.requests.get(id)!, other, dir)).dir;
  const d = await tensorDiff(join(a.artifacts.get(id)!, HESSIAN_FILE), join(again, HESSIAN_FILE));
  console.log(`${id}: XᵀX from the cpu inputs on ${provider}: max abs ${d.abs.toExponential(2)}, rel to max |XᵀX| ${d.rel.toExponential(2)}, diagonal rel ${d.diagRel.toExponential(2)}`);
}
for (const id of ids(a, 'gptq')) {
  const ra = a.requests.get(id)!;
  const rb = b?.requests.get(id);
  const chained = b ? await diffCodes(a.artifacts.get(id)!, b.artifacts.get(id)!) : undefined;
  t = performance.now();
  const again = b && rb && sameInputs(ra, rb) ? b.artifacts.get(id)! : (await rerunStep(ra, other, dir)).dir;
  const ms = performance.now() - t;
  const step = await diffCodes(a.artifacts.get(id)!, again);
  const hidden = await tensorDiff(join(a.artifacts.get(id)!, HIDDEN_FILE), join(again, HIDDEN_FILE));
  console.log(
    `${id}: chained ${chained ? `${share(chained)} ${JSON.stringify(chained.byModule)}` : '—'}; per step ${share(step)} ${JSON.stringify(step.byModule)}; ` +
      `next layer's inputs from the same inputs: max abs ${hidden.abs.toExponential(2)} (rel ${hidden.rel.toExponential(2)}); ${(ms / 1000).toFixed(1)} s`,
  );
}
await other.close();
await cpu.close();
