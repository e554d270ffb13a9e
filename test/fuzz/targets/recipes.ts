// Fuzz target: recipes. Every recipe in recipes/ and examples/ is mutated as text (lines deleted, duplicated,
// swapped or re-indented; scalars replaced by huge numbers, NaN and Inf spellings, nulls, tags; anchors,
// aliases, alias bombs and merge keys; truncation, tabs, control characters, a second document) and as data
// (keys deleted, renamed or retyped), sometimes with --set overrides. `validate` in process (loadRecipeSource,
// then compilePlan, then printing) must end in diagnostics or a plan: never a throw. Each diagnostic points
// inside the file it names.

import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import type { Diagnostic } from '../../../src/diag/diagnostic.js';
import { printDiagnostics } from '../../../src/diag/print.js';
import { compilePlan } from '../../../src/plan/compile.js';
import { loadRecipeSource } from '../../../src/recipe/load.js';
import { noteExit, UnacceptableOutcome, type FuzzTarget } from '../harness.js';

const REPO = resolve(import.meta.dirname, '../../..');

/** every shipped recipe: recipes/*.yaml and examples/<name>/recipe.yaml */
export function shippedRecipes(): { path: string; contents: string }[] {
  const paths = [
    ...readdirSync(join(REPO, 'recipes')).filter((f) => f.endsWith('.yaml')).sort().map((f) => join(REPO, 'recipes', f)),
    ...readdirSync(join(REPO, 'examples')).sort().map((d) => join(REPO, 'examples', d, 'recipe.yaml')),
  ];
  return paths.map((path) => ({ path, contents: readFileSync(path, 'utf8') }));
}

const SCALARS = [
  '1e400', '-1e400', '.nan', '.NaN', 'NaN', '.inf', '-.inf', 'Infinity', '"NaN"', '99999999999999999999999', '9007199254740993', '-1', '0', '0.5',
  '0x10', '0o17', '1_000', '"12"', '~', 'null', 'true', 'no', '[]', '{}', '[1, [2, [3]]]', '{a: 1}', "''", '"\\u0000"', '!!binary aGk=',
  '!!timestamp 2001-12-14', '!!set {a, b}', '!!omap [a: 1]', '!custom x', '!!int xyz', '!!float abc', '*nope', '&a 1', '|\n  text', '>-\n  folded',
];

export type RecipeMutation =
  | { kind: 'delete-line'; line: number }
  | { kind: 'duplicate-line'; line: number }
  | { kind: 'swap-lines'; a: number; b: number }
  | { kind: 'indent'; line: number; by: number; tab: boolean }
  | { kind: 'replace-scalar'; line: number; value: string }
  | { kind: 'anchor-alias'; from: number; to: number }
  | { kind: 'alias-bomb'; levels: number }
  | { kind: 'merge-key'; line: number }
  | { kind: 'insert'; at: number; text: string }
  | { kind: 'truncate'; at: number }
  | { kind: 'second-document' }
  | { kind: 'data-delete'; path: number[] }
  | { kind: 'data-rename'; path: number[]; name: string }
  | { kind: 'data-retype'; path: number[]; value: unknown };

export interface RecipeCase {
  recipe: number;
  mutations: RecipeMutation[];
  sets: string[];
}

const line = fc.nat({ max: 40 });
const fraction = fc.double({ min: 0, max: 1, noNaN: true });
const dataPath = fc.array(fc.nat({ max: 12 }), { minLength: 1, maxLength: 3 });

const mutation: fc.Arbitrary<RecipeMutation> = fc.oneof(
  fc.record({ kind: fc.constant('delete-line' as const), line }),
  fc.record({ kind: fc.constant('duplicate-line' as const), line }),
  fc.record({ kind: fc.constant('swap-lines' as const), a: line, b: line }),
  fc.record({ kind: fc.constant('indent' as const), line, by: fc.integer({ min: -4, max: 4 }), tab: fc.boolean() }),
  { arbitrary: fc.record({ kind: fc.constant('replace-scalar' as const), line, value: fc.constantFrom(...SCALARS) }), weight: 3 },
  fc.record({ kind: fc.constant('anchor-alias' as const), from: line, to: line }),
  fc.record({ kind: fc.constant('alias-bomb' as const), levels: fc.integer({ min: 1, max: 12 }) }),
  fc.record({ kind: fc.constant('merge-key' as const), line }),
  fc.record({ kind: fc.constant('insert' as const), at: fraction, text: fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('\t', '\u0000', '\ufeff', '\r', ':', '- ', '#', '{', '[', '"', "'", '%YAML 1.1\n', '? ', '\u2028')) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fraction }),
  fc.record({ kind: fc.constant('second-document' as const) }),
  fc.record({ kind: fc.constant('data-delete' as const), path: dataPath }),
  fc.record({ kind: fc.constant('data-rename' as const), path: dataPath, name: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('kind', 'scheme', 'group_size', 'groupsize', 'model', 'stages', '__proto__', 'constructor')) }),
  fc.record({ kind: fc.constant('data-retype' as const), path: dataPath, value: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom<unknown>(1e308, -1, 0, 2 ** 53 + 2, 'NaN', null, [], {}, [[[]]])) }),
);

const setArg = fc.tuple(
  fc.constantFrom('stages[0].scheme', 'stages[0].iters', 'stages[1].smoothing_strength', 'calibration.samples', 'calibration.seq_len', 'model', 'stages[5].kind', 'stages[-1].x', 'evaluate.perplexity.max_windows', 'x.y.z', 'stages', '', 'a[', 'stages[0]'),
  fc.constantFrom('W4A16', '1e400', 'NaN', '-1', '0', '1,2,3', '', '[1,2]', '{a: 1}', '*a', '&a x', '0.5,0.6', 'null'),
).map(([p, v]) => `${p}=${v}`);

export const recipeCase: fc.Arbitrary<RecipeCase> = fc.record({
  recipe: fc.nat({ max: 100 }),
  mutations: fc.array(mutation, { minLength: 1, maxLength: 3 }),
  sets: fc.oneof({ weight: 4, arbitrary: fc.constant<string[]>([]) }, { weight: 1, arbitrary: fc.array(setArg, { minLength: 1, maxLength: 2 }) }),
});

type Container = Record<string, unknown> | unknown[];

function walk(data: unknown, path: readonly number[]): { parent: Container; key: string | number } | undefined {
  let node = data;
  let at: { parent: Container; key: string | number } | undefined;
  for (const step of path) {
    // only plain maps and lists (a !!binary value is a Uint8Array)
    if (typeof node !== 'object' || node === null || ArrayBuffer.isView(node)) break;
    const keys: (string | number)[] = Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
    if (keys.length === 0) break;
    const key = keys[step % keys.length]!;
    at = { parent: node as Container, key };
    node = (node as Record<string | number, unknown>)[key];
  }
  return at;
}

/** the mutated recipe text */
export function mutateRecipe(contents: string, mutations: readonly RecipeMutation[]): string {
  let text = contents;
  for (const m of mutations) {
    const lines = text.split('\n');
    const pick = (i: number): number => (lines.length === 0 ? 0 : i % lines.length);
    switch (m.kind) {
      case 'delete-line':
        lines.splice(pick(m.line), 1);
        break;
      case 'duplicate-line':
        lines.splice(pick(m.line), 0, lines[pick(m.line)] ?? '');
        break;
      case 'swap-lines': {
        const [a, b] = [pick(m.a), pick(m.b)];
        [lines[a], lines[b]] = [lines[b] ?? '', lines[a] ?? ''];
        break;
      }
      case 'indent': {
        const i = pick(m.line);
        const l = lines[i] ?? '';
        lines[i] = m.by >= 0 ? `${(m.tab ? '\t' : ' ').repeat(m.by)}${l}` : l.slice(Math.min(-m.by, l.length - l.trimStart().length));
        break;
      }
      case 'replace-scalar': {
        const i = pick(m.line);
        // the last value on the line: after "key: ", or a flow item
        lines[i] = (lines[i] ?? '').replace(/(:\s*|-\s+)([^\s{}[\],:#][^{}[\],#]*?)(\s*(#.*)?)$/, (_, a: string, _v: string, c: string) => `${a}${m.value}${c}`);
        break;
      }
      case 'anchor-alias': {
        const [a, b] = [pick(m.from), pick(m.to)];
        lines[a] = (lines[a] ?? '').replace(/:\s+(?=\S)/, ': &x ');
        lines[b] = (lines[b] ?? '').replace(/:\s+\S.*$/, ': *x');
        break;
      }
      case 'alias-bomb': {
        const bomb = ['b0: &b0 [x, x, x, x, x, x, x, x, x, x]'];
        for (let l = 1; l <= m.levels; l++) bomb.push(`b${l}: &b${l} [${Array.from({ length: 10 }, () => `*b${l - 1}`).join(', ')}]`);
        lines.unshift(...bomb);
        break;
      }
      case 'merge-key':
        lines.splice(pick(m.line), 0, '<<: *m');
        break;
      case 'insert': {
        const joined = lines.join('\n');
        const at = Math.floor(m.at * joined.length);
        text = joined.slice(0, at) + m.text + joined.slice(at);
        continue;
      }
      case 'truncate':
        text = lines.join('\n').slice(0, Math.floor(m.at * text.length));
        continue;
      case 'second-document':
        lines.push('---', 'quantforge: 2');
        break;
      default: {
        let data: unknown;
        try {
          data = parse(lines.join('\n'), { uniqueKeys: false, maxAliasCount: 100, logLevel: 'silent' });
        } catch {
          continue;
        }
        const at = walk(data, m.path);
        if (!at) continue;
        const holder = at.parent as Record<string | number, unknown>;
        if (m.kind === 'data-delete') {
          if (Array.isArray(at.parent)) at.parent.splice(at.key as number, 1);
          else delete holder[at.key];
        } else if (m.kind === 'data-rename' && !Array.isArray(at.parent)) {
          const v = holder[at.key];
          delete holder[at.key];
          Object.defineProperty(holder, m.name, { value: v, enumerable: true, configurable: true, writable: true });
        } else if (m.kind === 'data-retype') holder[at.key] = m.value;
        text = stringify(data);
        continue;
      }
    }
    text = lines.join('\n');
  }
  return text;
}

function checkDiagnostics(diagnostics: readonly Diagnostic[], path: string): void {
  for (const d of diagnostics) {
    for (const r of d.related ?? []) checkDiagnostics([{ ...d, location: r.location, related: [] }], path);
    const { file, range } = d.location;
    if (typeof d.code !== 'string' || !/^[a-z0-9]+(-[a-z0-9]+)*$/.test(d.code)) throw new UnacceptableOutcome(`diagnostic code ${JSON.stringify(d.code)} is not kebab-case`);
    if (!d.message) throw new UnacceptableOutcome(`diagnostic ${d.code} has no message`);
    // --set arguments are their own source files; anything else must be the recipe
    if (file.path !== path && file.path !== '--set') throw new UnacceptableOutcome(`diagnostic ${d.code} points at ${file.path}`);
    if (range.offset < 0 || range.length < 0 || range.offset + range.length > file.contents.length + 1) {
      throw new UnacceptableOutcome(`diagnostic ${d.code} range [${range.offset}, +${range.length}] is outside its ${file.contents.length}-character file`);
    }
  }
}

/** validate in process: load (schema), then plan, then print; the outcome is 'ok' or the first diagnostic's code */
export function validateInProcess(path: string, contents: string, sets: readonly string[]): string {
  const loaded = loadRecipeSource({ path, contents }, sets);
  const result = loaded.ok ? compilePlan(loaded.value) : loaded;
  const diagnostics = result.ok ? [] : result.error;
  checkDiagnostics(diagnostics, path);
  printDiagnostics(diagnostics);
  if (!result.ok && diagnostics.every((d) => d.severity !== 'error')) throw new UnacceptableOutcome('the recipe failed without an error diagnostic');
  // `quantforge validate` prints the diagnostics and exits 2
  if (!result.ok) noteExit(2);
  return result.ok ? 'ok' : diagnostics.find((d) => d.severity === 'error')!.code;
}

export const recipesTarget: FuzzTarget<RecipeCase, { recipes: { path: string; contents: string }[] }> = {
  name: 'recipes',
  description: 'every recipe in recipes/ and examples/ mutated (lines, indentation, scalars, anchors/aliases, keys, --set) → validate in process',
  arbitrary: recipeCase,
  async setup() {
    return { recipes: shippedRecipes() };
  },
  async run(c, { recipes }) {
    const recipe = recipes[c.recipe % recipes.length]!;
    const contents = mutateRecipe(recipe.contents, c.mutations);
    try {
      return validateInProcess(recipe.path, contents, c.sets);
    } catch (e) {
      if (e instanceof UnacceptableOutcome) throw e;
      const where = ((e as Error).stack ?? '').split('\n').slice(0, 6).join('\n');
      throw new UnacceptableOutcome(`validate threw on ${recipe.path} with --set ${JSON.stringify(c.sets)}:\n${contents.slice(0, 400)}\n${where}`);
    }
  },
};
