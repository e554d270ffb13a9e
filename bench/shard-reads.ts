// What a calibration shard step reads: wiki-llama-8m's layer-0 inputs (its calibration text cut into
// --windows windows of --seq tokens, embedded and written as an activation file), then one gptq-hessian shard
// (shard 1 of --shards) in a fresh child process per mode: `whole` reads the layer's whole activation file and
// slices its windows (what the step did before it read by offsets), `windows` is the step as it is (its own
// window range, read by offset). Per mode: bytes read from the activation file (`whole`: rchar of /proc/self/io
// around the read; `windows`: the length of the step's one positional read), all bytes the process read during
// the step (rchar, measured in both modes), and the process's peak RSS.
// Usage: npx tsx bench/shard-reads.ts [--windows 64] [--seq 256] [--shards 4]

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { embed } from '../src/model/embed.js';
import { HfSource } from '../src/model/source.js';
import { loadTokenizer } from '../src/model/tokenizer.js';
import { cutWindows, readDatasetText } from '../src/model/windows.js';
import { Runtime } from '../src/ort/session.js';
import { forEachBatch, readHidden, writeHidden } from '../src/steps/activations.js';
import { gptqHessianStep } from '../src/steps/gptq-hessian.js';
import { xtxTap } from '../src/steps/gptq-job.js';
import { shardWindows } from '../src/steps/hessian-partials.js';
import { tensor } from '../src/tensor.js';
import { table } from './util.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
const model = join(repo, '../shared/models/wiki-llama-8m');
const SITES = ['attn_in', 'o_in', 'mlp_in', 'down_in'];
const { values } = parseArgs({ options: { windows: { type: 'string', default: '64' }, seq: { type: 'string', default: '256' }, shards: { type: 'string', default: '4' }, child: { type: 'string' }, dir: { type: 'string' } } });
const [N, T, K] = [Number(values.windows), Number(values.seq), Number(values.shards)];

const rchar = (): number => Number(/rchar: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))![1]);

interface Measured {
  hiddenBytes: number;
  stepBytes: number;
  maxRssMb: number;
}

/** one shard in this process, reading as `mode` says */
async function child(mode: string, dir: string): Promise<Measured> {
  const rt = new Runtime({ device: 'cpu', threads: 1 });
  const outDir = await mkdtemp(join(tmpdir(), 'qf-shard-reads-out-'));
  const r0 = rchar();
  let hiddenBytes = 0;
  if (mode === 'windows') {
    const ctx = { id: 'shard', params: { layer: 0, sites: SITES, range_sites: [], shard: 1, shards: K }, inputs: { hidden: { id: 'h', kind: 'embed', dir, result: null } }, files: {}, modelDir: model, outDir, runtime: rt, progress: () => {}, warn: () => {}, signal: new AbortController().signal };
    await gptqHessianStep.run(ctx);
    const [s, e] = shardWindows(N, 1, K);
    hiddenBytes = (e - s) * T * 288 * 4; // the length of the step's one positional read; the step's total below is measured
  } else {
    const before = rchar();
    const hidden = await readHidden(dir);
    hiddenBytes = rchar() - before;
    const src = await HfSource.open(model);
    const [s, e] = shardWindows(N, 1, K);
    const H = hidden.dims[2] as number;
    const mine = tensor('float32', [e - s, T, H], hidden.data.subarray(s * T * H, e * T * H));
    const width = (site: string): number => (site === 'down_in' ? 768 : 288);
    const state = await src.layer(0);
    await forEachBatch(rt, src.config, src.arch.layer(src.config, 0), state, mine, { tap: xtxTap(SITES as never, width as never, false, false), skipOut: true, layer: 0 } as never, () => {});
    await src.close();
  }
  const stepBytes = rchar() - r0;
  await rt.close();
  await rm(outDir, { recursive: true, force: true });
  return { hiddenBytes, stepBytes, maxRssMb: process.resourceUsage().maxRSS / 1024 };
}

if (values.child) {
  console.log(JSON.stringify(await child(values.child, values.dir!)));
  process.exit(0);
}

const dir = await mkdtemp(join(tmpdir(), 'qf-shard-reads-'));
const src = await HfSource.open(model);
const ids = cutWindows(loadTokenizer(model).encode(readDatasetText(join(repo, '../shared/data/wiki-calib.txt'))), T, N);
const n = ids.dims[0] as number;
if (n !== N) throw new Error(`wiki-calib.txt holds ${n} windows of ${T} tokens, fewer than ${N}`);
await writeHidden(dir, tensor('float32', [N, T, src.config.hiddenSize], embed(await src.tensor(src.arch.embedding), ids.data)));
await src.close();
const rows: string[][] = [];
for (const mode of ['whole', 'windows']) {
  const out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', mode, '--dir', dir, '--windows', String(N), '--seq', String(T), '--shards', String(K)], { encoding: 'utf8' });
  const m = JSON.parse(out.trim().split('\n').pop()!) as Measured;
  rows.push([mode === 'whole' ? 'whole file, then slice (before)' : 'own windows by offset (now)', (m.hiddenBytes / 1e6).toFixed(2), (m.stepBytes / 1e6).toFixed(2), m.maxRssMb.toFixed(0)]);
}
await rm(dir, { recursive: true, force: true });
console.log(`wiki-llama-8m layer 0, ${N} windows × ${T} tokens (activation file ${((N * T * 288 * 4) / 1e6).toFixed(1)} MB), shard 1 of ${K}; load average ${loadavg()[0]!.toFixed(1)}`);
console.log(table(['gptq-hessian shard reads', 'activation MB read', 'all MB read in the step', 'peak RSS MB'], rows));
