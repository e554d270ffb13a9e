// compressed-tensors checkpoints read with code written from the format's description (DESIGN.md §3,
// compressed-tensors' pack_quantized / int_quantized layouts), never with quantforge's reader: the CLI sweeps
// rtn over W4A16, W4A16_ASYM and W8A8 on the synthetic example model and a GPTQ run with `actorder: group`
// writes g_idx; each checkpoint's tensors (names, dtypes, shapes, bytes), int32 packing (element 0 in the low
// bits, codes + 2^(b−1)), zero points packed along the output dim, scales recomputed from the fp32 weights by
// the DESIGN §2 formulas, and every quantization_config field are checked; so are the files a run writes
// beside them: quantforge.lock.json (digests recomputed here), report.md/html and sweep.md/json.

import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cliOk, REPO } from './cli-run.js';
import { floats, ints, readModelDirByHand, type HandTensor } from './safetensors-by-hand.js';

let root: string;
const LINEAR = /^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/;

/** round half to even, written out (the format's rounding, torch.round) */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}
const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, x));
const F32_EPS = 2 ** -23;

/** b-bit unsigned fields of an int32 word stream, element 0 in the least significant bits */
function unpackLowFirst(words: number[], count: number, bits: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    let u = 0;
    for (let b = 0; b < bits; b++) {
      const pos = i * bits + b;
      u |= ((words[pos >> 5]! >>> (pos & 31)) & 1) << b;
    }
    out.push(u);
  }
  return out;
}

/** the scheme's qparams and codes of one row group, recomputed from the fp32 weights (DESIGN.md §2) */
function rtnGroup(xs: number[], bits: number, symmetric: boolean): { scale: number; zp: number; codes: number[] } {
  const qmin = -(2 ** (bits - 1));
  const qmax = 2 ** (bits - 1) - 1;
  const lo = Math.min(0, ...xs);
  const hi = Math.max(0, ...xs);
  const scale = Math.max(Math.fround(symmetric ? Math.max(-lo, hi) / ((qmax - qmin) / 2) : (hi - lo) / (qmax - qmin)), F32_EPS);
  const zp = symmetric ? 0 : roundHalfEven(clamp(qmin - lo / scale, qmin, qmax));
  return { scale, zp, codes: xs.map((x) => roundHalfEven(clamp(Math.fround(Math.fround(x / scale) + zp), qmin, qmax))) };
}

interface Checked {
  mismatchedCodes: number;
  codes: number;
}

/** one quantized Linear of a pack-quantized or int-quantized checkpoint against the fp32 weight it came from */
function checkLinear(name: string, w: HandTensor, out: Map<string, HandTensor>, scheme: string): Checked {
  const [rows, cols] = w.shape as [number, number];
  const x = floats(w);
  const m = name.replace(/\.weight$/, '');
  const bits = scheme === 'W8A8' ? 8 : 4;
  const group = scheme === 'W8A8' ? cols : 128;
  const groups = Math.ceil(cols / group);
  const symmetric = scheme !== 'W4A16_ASYM';
  const scaleT = out.get(`${m}.weight_scale`)!;
  expect([scaleT.dtype, scaleT.shape], `${m}.weight_scale`).toEqual([w.dtype, [rows, groups]]);
  const scales = floats(scaleT);
  let codes: number[];
  let zps: number[] | undefined;
  if (scheme === 'W8A8') {
    const q = out.get(`${m}.weight`)!;
    expect([q.dtype, q.shape], `${m}.weight`).toEqual(['I8', [rows, cols]]);
    codes = ints(q);
  } else {
    const packed = out.get(`${m}.weight_packed`)!;
    const width = Math.ceil((cols * bits) / 32);
    expect([packed.dtype, packed.shape], `${m}.weight_packed`).toEqual(['I32', [rows, width]]);
    const shape = out.get(`${m}.weight_shape`)!;
    expect([shape.dtype, shape.shape, ints(shape)], `${m}.weight_shape`).toEqual(['I64', [2], [rows, cols]]);
    const words = ints(packed);
    codes = [];
    for (let r = 0; r < rows; r++) {
      const u = unpackLowFirst(words.slice(r * width, (r + 1) * width), width * (32 / bits), bits);
      // the padding of the last word is zero bits
      expect(u.slice(cols).every((v) => v === 0), `${m} row ${r} padding`).toBe(true);
      codes.push(...u.slice(0, cols).map((v) => v - 2 ** (bits - 1)));
    }
    const zpT = out.get(`${m}.weight_zero_point`);
    if (symmetric) expect(zpT, `${m}.weight_zero_point`).toBeUndefined();
    else {
      // packed along the output dim: column g of the zero points is one stream of `rows` values
      const zpRows = Math.ceil((rows * bits) / 32);
      expect([zpT!.dtype, zpT!.shape], `${m}.weight_zero_point`).toEqual(['I32', [zpRows, groups]]);
      const zw = ints(zpT!);
      zps = new Array<number>(rows * groups);
      for (let g = 0; g < groups; g++) {
        const column = Array.from({ length: zpRows }, (_, i) => zw[i * groups + g]!);
        unpackLowFirst(column, rows, bits).forEach((u, r) => (zps![r * groups + g] = u - 2 ** (bits - 1)));
      }
    }
    expect(out.has(`${m}.weight_g_idx`), `${m}.weight_g_idx`).toBe(false);
  }
  let mismatched = 0;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const lo = g * group;
      const hi = Math.min(cols, lo + group);
      const want = rtnGroup(x.slice(r * cols + lo, r * cols + hi), bits, symmetric);
      expect(Math.abs(scales[r * groups + g]! - want.scale) / want.scale, `${m} scale [${r}, ${g}]`).toBeLessThan(1e-6);
      if (zps) expect(zps[r * groups + g], `${m} zero point [${r}, ${g}]`).toBe(want.zp);
      for (let c = lo; c < hi; c++) if (codes[r * cols + c] !== want.codes[c - lo]) mismatched++;
    }
  }
  return { mismatchedCodes: mismatched, codes: rows * cols };
}

function expectQuantizationConfig(qc: Record<string, unknown>, scheme: string): void {
  const known = ['config_groups', 'quant_method', 'format', 'quantization_status', 'global_compression_ratio', 'ignore', 'kv_cache_scheme', 'sparsity_config', 'transform_config', 'version'];
  for (const k of Object.keys(qc)) expect(known, `quantization_config.${k} is a field of the format`).toContain(k);
  const format = scheme === 'W8A8' ? 'int-quantized' : 'pack-quantized';
  expect(qc['quant_method']).toBe('compressed-tensors');
  expect(qc['format']).toBe(format);
  expect(qc['quantization_status']).toBe('compressed');
  expect(qc['kv_cache_scheme']).toBeNull();
  expect(qc['ignore']).toEqual(['lm_head']);
  expect(qc['version']).toMatch(/^\d+\.\d+\.\d+/);
  const groups = qc['config_groups'] as Record<string, Record<string, unknown>>;
  expect(Object.keys(groups)).toEqual(['group_0']);
  const g = groups['group_0']!;
  expect(g['targets']).toEqual(['Linear']);
  expect(g['output_activations']).toBeNull();
  if ('format' in g) expect(g['format']).toBe(format);
  const weights = g['weights'] as Record<string, unknown>;
  expect(weights).toMatchObject({
    num_bits: scheme === 'W8A8' ? 8 : 4,
    type: 'int',
    symmetric: scheme !== 'W4A16_ASYM',
    strategy: scheme === 'W8A8' ? 'channel' : 'group',
    group_size: scheme === 'W8A8' ? null : 128,
    dynamic: false,
  });
  const argFields = ['num_bits', 'type', 'symmetric', 'group_size', 'strategy', 'block_structure', 'dynamic', 'actorder', 'observer', 'observer_kwargs', 'scale_dtype', 'zp_dtype'];
  for (const k of Object.keys(weights)) expect(argFields, `weights.${k} is a QuantizationArgs field`).toContain(k);
  if (scheme === 'W8A8') {
    expect(g['input_activations']).toMatchObject({ num_bits: 8, type: 'int', symmetric: true, strategy: 'token', dynamic: true });
  } else expect(g['input_activations']).toBeNull();
}

const SCHEMES = ['W4A16', 'W4A16_ASYM', 'W8A8'];
let model: Map<string, HandTensor>;
let sweepStdout: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'qf-conformance-'));
  await cliOk(['example', 'model', '--seed', '0'], root);
  model = readModelDirByHand(join(root, 'model'));
  writeFileSync(
    join(root, 'rtn.yaml'),
    `quantforge: 1
model: ./model
calibration: { dataset: ./model/calib.txt, samples: 4, seq_len: 64 }
stages:
  - { kind: rtn, scheme: W4A16, targets: [Linear], ignore: [lm_head] }
evaluate:
  perplexity: { dataset: ./model/eval.txt, seq_len: 64, max_windows: 4 }
outputs:
  - { format: compressed-tensors, path: ./out/ct }
`,
  );
  sweepStdout = await cliOk(['sweep', 'rtn.yaml', '--set', `stages[0].scheme=${SCHEMES.join(',')}`, '--cache-dir', 'cache'], root);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('compressed-tensors checkpoints against the format description', () => {
  for (const scheme of SCHEMES) {
    test(`rtn ${scheme}: every tensor, the packing and every quantization_config field`, () => {
      const dir = join(root, 'out/ct', `scheme=${scheme}`);
      const out = readModelDirByHand(dir);
      const expected = new Set<string>();
      let checked = 0;
      let mismatched = 0;
      for (const [name, t] of model) {
        if (!LINEAR.test(name)) {
          // norms, embeddings and the ignored lm_head are copied unchanged
          expected.add(name);
          const o = out.get(name);
          expect(o, name).toBeDefined();
          expect([o!.dtype, o!.shape], name).toEqual([t.dtype, t.shape]);
          expect(o!.bytes.equals(t.bytes), `${name} bytes`).toBe(true);
          continue;
        }
        const m = name.replace(/\.weight$/, '');
        const names = scheme === 'W8A8' ? ['weight', 'weight_scale'] : ['weight_packed', 'weight_scale', 'weight_shape', ...(scheme === 'W4A16_ASYM' ? ['weight_zero_point'] : [])];
        for (const n of names) expected.add(`${m}.${n}`);
        const r = checkLinear(name, t, out, scheme);
        checked += r.codes;
        mismatched += r.mismatchedCodes;
      }
      expect([...out.keys()].sort()).toEqual([...expected].sort());
      // codes recomputed in float64 may differ from fp32 arithmetic only at exact ties: at most 1 in 10^5
      expect(mismatched / checked).toBeLessThan(1e-5);
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      const original = JSON.parse(readFileSync(join(root, 'model/config.json'), 'utf8')) as Record<string, unknown>;
      // the model's own fields are kept; quantization_config is added
      expect(config).toMatchObject(original);
      expectQuantizationConfig(config['quantization_config'] as Record<string, unknown>, scheme);
      // tokenizer and generation files are copied byte for byte
      for (const f of readdirSync(join(root, 'model')).filter((f) => /^(tokenizer|special_tokens|generation_config)/.test(f))) {
        expect(readFileSync(join(dir, f)).equals(readFileSync(join(root, 'model', f))), f).toBe(true);
      }
    });
  }

  test('GPTQ W4A16 with actorder group: weight_g_idx maps every input column to its group', async () => {
    writeFileSync(
      join(root, 'gptq.yaml'),
      `quantforge: 1
model: ./model
calibration: { dataset: ./model/calib.txt, samples: 8, seq_len: 64 }
stages:
  - { kind: gptq, scheme: W4A16, targets: [Linear], ignore: [lm_head], actorder: group }
evaluate:
  perplexity: { dataset: ./model/eval.txt, seq_len: 64, max_windows: 2 }
  kl: false
outputs:
  - { format: compressed-tensors, path: ./out/gptq }
`,
    );
    await cliOk(['run', 'gptq.yaml', '--cache-dir', 'cache'], root);
    const dir = join(root, 'out/gptq');
    // two datasets, each recorded under its own role in the lock file
    const files = (JSON.parse(readFileSync(join(dir, 'quantforge.lock.json'), 'utf8')) as { files: Record<string, string> }).files;
    expect(files['calibration']).toBe(sha256(join(root, 'model/calib.txt')));
    expect(files['evaluation']).toBe(sha256(join(root, 'model/eval.txt')));
    expect(files['calibration']).not.toBe(files['evaluation']);
    const out = readModelDirByHand(dir);
    const qc = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))['quantization_config'] as Record<string, unknown>;
    expectQuantizationConfig(qc, 'W4A16');
    expect((qc['config_groups'] as Record<string, { weights: { actorder: string } }>)['group_0']!.weights.actorder).toBe('group');
    let permuted = 0;
    for (const [name, w] of model) {
      if (!LINEAR.test(name)) continue;
      const m = name.replace(/\.weight$/, '');
      const [rows, cols] = w.shape as [number, number];
      const groups = Math.ceil(cols / 128);
      const gIdx = out.get(`${m}.weight_g_idx`)!;
      expect([gIdx.dtype, gIdx.shape], `${m}.weight_g_idx`).toEqual(['I32', [cols]]);
      const g = ints(gIdx);
      // every group holds group_size columns (the last one the rest)
      const counts = new Array<number>(groups).fill(0);
      for (const v of g) counts[v]!++;
      expect(counts, m).toEqual(Array.from({ length: groups }, (_, i) => Math.min(128, cols - i * 128)));
      if (g.some((v, c) => v !== Math.floor(c / 128))) permuted++;
      // dequantized with scale[row, g_idx[col]] the weight is close to the original, closer than with the
      // columns' natural groups: g_idx is what assigns the scales
      const width = Math.ceil((cols * 4) / 32);
      const words = ints(out.get(`${m}.weight_packed`)!);
      const scales = floats(out.get(`${m}.weight_scale`)!);
      const x = floats(w);
      let err = 0;
      let errNatural = 0;
      let norm = 0;
      for (let r = 0; r < rows; r++) {
        const q = unpackLowFirst(words.slice(r * width, (r + 1) * width), cols, 4).map((u) => u - 8);
        for (let c = 0; c < cols; c++) {
          const xv = x[r * cols + c]!;
          err += (q[c]! * scales[r * groups + g[c]!]! - xv) ** 2;
          errNatural += (q[c]! * scales[r * groups + Math.floor(c / 128)]! - xv) ** 2;
          norm += xv * xv;
        }
      }
      // GPTQ trades weight error for output error (8 windows of 64 tokens here): measured 0.16–0.32 with
      // g_idx, 0.23–0.35 with the natural groups, 0.11 for rtn
      expect(Math.sqrt(err / norm), `${m} relative error`).toBeLessThan(0.5);
      if (g.some((v, c) => v !== Math.floor(c / 128))) expect(err, m).toBeLessThan(errNatural);
    }
    // act order permutes the columns of (nearly) every multi-group Linear
    expect(permuted).toBeGreaterThan(0);
  });
});

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

interface SweepJson {
  recipe: string;
  variants: { label: string; params: { key: string; value: unknown }[]; perplexity: { fp: number; quantized: number }; kl: number }[];
}

describe('the files a run writes beside its outputs', () => {
  test('quantforge.lock.json: recipe digest, variant, overrides, params, output key, step keys, input digests, tools', () => {
    const recipe = join(root, 'rtn.yaml');
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
    const ort = JSON.parse(readFileSync(join(REPO, 'node_modules/onnxruntime-node/package.json'), 'utf8')) as { version: string };
    for (const scheme of SCHEMES) {
      const dir = join(root, 'out/ct', `scheme=${scheme}`);
      const lock = JSON.parse(readFileSync(join(dir, 'quantforge.lock.json'), 'utf8')) as Record<string, any>;
      expect(Object.keys(lock).sort()).toEqual(['files', 'output', 'overrides', 'params', 'quantforge_lock', 'recipe', 'steps', 'tools', 'variant']);
      expect(lock['quantforge_lock']).toBe(1);
      expect(lock['recipe']).toEqual({ path: recipe, sha256: sha256(recipe) });
      // the recipe travels with the output, byte for byte
      expect(readFileSync(join(dir, 'recipe.yaml')).equals(readFileSync(recipe))).toBe(true);
      expect(lock['variant']).toBe(`scheme=${scheme}`);
      expect(lock['overrides']).toEqual([{ path: 'stages.0.scheme', value: scheme }]);
      expect(lock['params'].stages[0]).toMatchObject({ kind: 'rtn', scheme, targets: ['Linear'], ignore: ['lm_head'] });
      expect(lock['params'].calibration).toMatchObject({ samples: 4, seq_len: 64 });
      expect(lock['output'].format).toBe('compressed-tensors');
      expect(lock['output'].key).toMatch(/^[0-9a-f]{64}$/);
      const steps = lock['steps'] as Record<string, string>;
      expect(steps['pack/compressed-tensors']).toBe(lock['output'].key);
      for (let l = 0; l < 4; l++) expect(steps[`stage1.rtn/layer.${l}`], `layer ${l}`).toMatch(/^[0-9a-f]{64}$/);
      expect(new Set(Object.values(steps)).size).toBe(Object.keys(steps).length);
      // every model file's digest is the sha256 of the file as it is on disk; each dataset under its own role
      const files = lock['files'] as Record<string, string>;
      const modelFiles = Object.keys(files).filter((k) => k.startsWith('model/'));
      expect(modelFiles).toContain('model/model.safetensors');
      for (const k of modelFiles) expect(files[k], k).toBe(sha256(join(root, k)));
      // (rtn W4A16 reads no calibration data: the GPTQ test below checks both datasets side by side)
      expect(files['evaluation']).toBe(sha256(join(root, 'model/eval.txt')));
      expect(files['calibration']).toBeUndefined();
      expect(files['dataset']).toBeUndefined();
      expect(lock['tools']).toEqual({ quantforge: pkg.version, 'onnxruntime-node': ort.version });
    }
    // the variants differ in their quantization steps, not in their inputs
    const locks = SCHEMES.map((s) => JSON.parse(readFileSync(join(root, 'out/ct', `scheme=${s}`, 'quantforge.lock.json'), 'utf8')) as Record<string, any>);
    expect(new Set(locks.map((l) => l.steps['stage1.rtn/layer.0'])).size).toBe(3);
    expect(new Set(locks.map((l) => JSON.stringify(l.files))).size).toBe(1);
  });

  test('sweep.json and sweep.md: one row per variant in --set order, the same numbers in both and on stdout', () => {
    const dir = join(root, 'rtn.sweep');
    const json = JSON.parse(readFileSync(join(dir, 'sweep.json'), 'utf8')) as SweepJson;
    expect(json.recipe).toBe(join(root, 'rtn.yaml'));
    expect(json.variants.map((v) => v.label)).toEqual(SCHEMES.map((s) => `scheme=${s}`));
    for (const [i, v] of json.variants.entries()) {
      expect(v.params).toEqual([{ key: 'stages[0].scheme', value: SCHEMES[i] }]);
      expect(v.perplexity.fp).toBe(json.variants[0]!.perplexity.fp); // one fp evaluation for all variants
      expect(Number.isFinite(v.perplexity.quantized)).toBe(true);
      expect(v.kl).toBeGreaterThan(0);
    }
    const md = readFileSync(join(dir, 'sweep.md'), 'utf8');
    const lines = md.trim().split('\n');
    expect(lines[0]).toBe(`# Sweep of ${join(root, 'rtn.yaml')}`);
    const cells = (l: string): string[] => l.split('|').slice(1, -1).map((c) => c.trim());
    const head = cells(lines[2]!);
    expect(head.slice(0, 3)).toEqual(['stages[0].scheme', 'ppl fp', 'ppl quantized']);
    expect(head.at(-1)).toBe('KL');
    const rows = lines.slice(4).map(cells);
    expect(rows.map((r) => r[0])).toEqual(SCHEMES);
    for (const [i, r] of rows.entries()) {
      const v = json.variants[i]!;
      expect([r[1], r[2], r.at(-1)]).toEqual([v.perplexity.fp.toFixed(4), v.perplexity.quantized.toFixed(4), v.kl.toFixed(5)]);
    }
    // `quantforge sweep` prints the same table
    expect(sweepStdout).toContain(lines.slice(2).join('\n'));
  });

  test('report.md and report.html: the perplexity table matches the sweep, charts exist, the HTML is self-contained', () => {
    const json = JSON.parse(readFileSync(join(root, 'rtn.sweep', 'sweep.json'), 'utf8')) as SweepJson;
    const reports = join(root, 'out', 'rtn-report');
    for (const v of json.variants) {
      const dir = join(reports, v.label);
      const md = readFileSync(join(dir, 'report.md'), 'utf8');
      const row = (label: string): string[] => md.split('\n').find((l) => l.startsWith(`| ${label} |`))!.split('|').slice(1, -1).map((c) => c.trim());
      // 4 windows of 64 tokens predict 4 × 63 tokens (DESIGN.md §6)
      expect(row('fp32')).toEqual(['fp32', v.perplexity.fp.toFixed(3), Math.log(v.perplexity.fp).toFixed(4), '–', '252']);
      const q = row('fake-quantized');
      expect([q[1], q[2], q[4]]).toEqual([v.perplexity.quantized.toFixed(3), Math.log(v.perplexity.quantized).toFixed(4), '252']);
      expect(Number(q[3])).toBeCloseTo(v.kl, 5);
      const charts = [...md.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]!);
      expect(charts.length).toBeGreaterThan(0);
      for (const c of charts) {
        expect(existsSync(join(dir, c)), c).toBe(true);
        expect(readFileSync(join(dir, c), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
      }
      const html = readFileSync(join(dir, 'report.html'), 'utf8');
      expect(html).toMatch(/^<!doctype html>/i);
      expect(html).toContain(v.perplexity.quantized.toFixed(3));
      expect((html.match(/<svg/g) ?? []).length).toBe(charts.length);
      // nothing loaded from elsewhere: no src= or stylesheet links
      expect(html).not.toMatch(/\ssrc=|<link\s/i);
    }
  });
});
