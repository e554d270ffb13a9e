// The import-direction check behind test/architecture.test.ts: every import of src/ (static `from '…'`,
// side-effect `import '…'`, dynamic `import('…')`, type-only ones included) must point to the same folder
// or to a folder lower in the layer stack, and no set of files may import each other in a cycle.

import { readdirSync, readFileSync } from 'node:fs';
import { join, posix, relative } from 'node:path';

/** folders of src/, top to bottom; `.` holds the leaf files directly under src/ (tensor.ts, random.ts ...) */
export const LAYERS = [
  'cli',
  'commands',
  'exec',
  'plan',
  'outputs',
  'stages',
  'steps',
  'graphs',
  'model',
  'algo',
  'formats',
  'quant',
  'ort',
  'cache',
  'recipe',
  'diag',
  '.',
] as const;

/** source text by path relative to src/, with `/` separators (`plan/compile.ts`) */
export type SourceTree = ReadonlyMap<string, string>;

export interface ImportEdge {
  from: string;
  to: string;
}

export interface LayerReport {
  /** imports that go up the stack, or into a folder that has no layer */
  upward: string[];
  /** each cycle as its files in import order, the first repeated at the end */
  cycles: string[][];
}

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;

/** every module specifier a file imports, as written */
export function specifiersOf(text: string): string[] {
  return [...text.matchAll(SPECIFIER)].map((m) => m[1]!);
}

/** the relative imports of one file, resolved to paths relative to src/ (`.js` read as `.ts`) */
export function importsOf(file: string, text: string): string[] {
  return specifiersOf(text)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\.js$/, '.ts'));
}

/** the layer of a file: its first folder, `cli` for cli.ts, `.` for the other files directly under src/ */
export function layerOf(file: string): string {
  const parts = file.split('/');
  if (parts.length === 1) return file === 'cli.ts' ? 'cli' : '.';
  return parts[0]!;
}

export function rank(layer: string): number {
  return (LAYERS as readonly string[]).indexOf(layer);
}

export function checkLayers(tree: SourceTree): LayerReport {
  const edges: ImportEdge[] = [];
  for (const [file, text] of tree) for (const to of importsOf(file, text)) edges.push({ from: file, to });
  const upward: string[] = [];
  for (const { from, to } of edges) {
    const [a, b] = [layerOf(from), layerOf(to)];
    if (rank(a) === -1) upward.push(`${from}: folder "${a}" has no layer`);
    else if (rank(b) === -1) upward.push(`${from} → ${to}: folder "${b}" has no layer`);
    else if (rank(b) < rank(a)) upward.push(`${from} → ${to}: ${a} may not import ${b}, which is above it`);
  }
  return { upward: [...new Set(upward)], cycles: findCycles(edges) };
}

/** one cycle per strongly connected component of more than one file (or a file importing itself) */
function findCycles(edges: readonly ImportEdge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of edges) next.set(from, [...(next.get(from) ?? []), to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let counter = 0;
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    for (let w = stack.pop()!; ; w = stack.pop()!) {
      onStack.delete(w);
      component.push(w);
      if (w === v) break;
    }
    if (component.length > 1 || (next.get(v) ?? []).includes(v)) cycles.push(cycleThrough(component, next));
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) visit(v);
  return cycles;
}

/** a shortest closed path through the component's first file (in sorted order) */
function cycleThrough(component: readonly string[], next: ReadonlyMap<string, string[]>): string[] {
  const members = new Set(component);
  const start = [...component].sort()[0]!;
  const previous = new Map<string, string>();
  const queue = [start];
  for (let at = queue.shift(); at !== undefined; at = queue.shift()) {
    for (const w of next.get(at) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let v: string | undefined = at; v !== undefined && v !== start; v = previous.get(v)) path.splice(1, 0, v);
        return [...path, start];
      }
      if (!previous.has(w)) {
        previous.set(w, at);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/** every .ts file under `srcDir`, by path relative to it */
export function readTree(srcDir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) out.set(relative(srcDir, path).split('\\').join('/'), readFileSync(path, 'utf8'));
    }
  };
  walk(srcDir);
  return out;
}

