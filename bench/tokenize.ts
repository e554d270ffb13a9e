// Tokenizer throughput: tokens/s encoding each shared evaluation file whole (the `tokenize` step of an
// evaluation), and the time until a calibration set's ids are known (128 windows of 256 tokens from the
// calibration file: the whole file before, only its beginning with encodePrefix), for this tree and, with
// --base DIR (another checkout), that tree's tokenizer, interleaved run by run; the ids must be equal.
// Usage: npx tsx bench/tokenize.ts [--base DIR] [--runs 5]

import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { median, table } from './util.js';

const { values } = parseArgs({ options: { base: { type: 'string' }, runs: { type: 'string', default: '5' } } });
const RUNS = Number(values.runs);
const SHARED = resolve(import.meta.dirname, '../../shared');
const CALIB_TOKENS = 128 * 256;

const CASES = [
  { model: 'stories260K', eval: 'tinystories-eval.txt', calib: 'tinystories-calib.txt' },
  { model: 'babyllama-char105', eval: 'tinystories-eval.txt', calib: 'tinystories-calib.txt' },
  { model: 'wiki-llama-8m', eval: 'wikitext-2-raw-test.txt', calib: 'wiki-calib.txt' },
].filter((c) => existsSync(join(SHARED, 'models', c.model)));

type TokenizerModule = typeof import('../src/model/tokenizer.js');
type WindowsModule = typeof import('../src/model/windows.js');
interface Tree { name: string; tok: TokenizerModule; win: WindowsModule }
const trees: Tree[] = [];
for (const [name, root] of [['this tree', resolve(import.meta.dirname, '..')], ...(values.base ? [['base', resolve(values.base)]] : [])] as [string, string][]) {
  const load = async <T>(p: string): Promise<T> => (await import(pathToFileURL(join(root, 'src', p)).href)) as T;
  trees.push({ name, tok: await load<TokenizerModule>('model/tokenizer.ts'), win: await load<WindowsModule>('model/windows.ts') });
}

/** encode the whole evaluation file (read included): ids and ms */
function encodeWhole(t: Tree, modelDir: string, file: string): { ids: number[]; ms: number } {
  const tok = t.tok.loadTokenizer(modelDir);
  const t0 = performance.now();
  const ids = tok.encode(t.win.readDatasetText(file));
  return { ids, ms: performance.now() - t0 };
}

/** the first CALIB_TOKENS ids of the calibration file as the tree's tokenize step gets them */
function encodeCalibration(t: Tree, modelDir: string, file: string): { ids: number[]; ms: number } {
  const tok = t.tok.loadTokenizer(modelDir);
  const t0 = performance.now();
  const prefix = 'encodePrefix' in tok && 'datasetPieces' in t.win;
  const ids = prefix ? tok.encodePrefix(t.win.datasetPieces(file), CALIB_TOKENS).ids : tok.encode(t.win.readDatasetText(file));
  return { ids: ids.slice(0, CALIB_TOKENS), ms: performance.now() - t0 };
}

const same = (a: number[], b: number[]): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

const load0 = loadavg()[0]!;
const rows: string[][] = [];
for (const c of CASES) {
  const modelDir = join(SHARED, 'models', c.model);
  for (const [what, file, fn] of [
    ['whole eval file', join(SHARED, 'data', c.eval), encodeWhole],
    [`calibration ${CALIB_TOKENS} tokens`, join(SHARED, 'data', c.calib), encodeCalibration],
  ] as const) {
    const ms = new Map<string, number[]>(trees.map((t) => [t.name, []]));
    let tokens = 0;
    let reference: number[] | undefined;
    fn(trees[0]!, modelDir, file); // warm-up
    for (let r = 0; r < RUNS; r++) {
      for (const t of trees) {
        const out = fn(t, modelDir, file);
        reference ??= out.ids;
        if (!same(out.ids, reference)) throw new Error(`${c.model} ${what}: ${t.name} gives other ids`);
        tokens = out.ids.length;
        ms.get(t.name)!.push(out.ms);
      }
    }
    const mine = median(ms.get('this tree')!);
    const base = values.base ? median(ms.get('base')!) : undefined;
    rows.push([
      c.model,
      what,
      String(tokens),
      ...(base !== undefined ? [`${base.toFixed(0)} ms (${((tokens / base) * 1000).toFixed(0)} tok/s)`] : []),
      `${mine.toFixed(0)} ms (${((tokens / mine) * 1000).toFixed(0)} tok/s)`,
      ...(base !== undefined ? [`**${(base / mine).toFixed(2)}×**`] : []),
    ]);
  }
}
console.log(table(['model', 'encode', 'ids', ...(values.base ? ['base'] : []), 'this tree', ...(values.base ? ['speedup'] : [])], rows));
console.log(`\nmedian of ${RUNS} runs per tree after a warm-up, interleaved; ids equal between trees; load average ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`);
