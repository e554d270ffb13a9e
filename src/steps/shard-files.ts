// The reading side that data-parallel calibration's reduce steps share (recipe `parallel.calibration_shards`):
// each shard step stores its partial sums in one safetensors file with metadata `windows` "start,end,of" (its
// calibration windows [start, end) of `of`), and a reduce opens the shards' files in shard order, checks that
// their windows cover 0..of exactly once and in order, reads tensors by name with the file named in every
// error, and adds float64 sums in shard order. capture-partials.ts (SmoothQuant/AWQ statistics) and
// awq-partials.ts (AWQ candidate losses) read through it; hessian-partials.ts (GPTQ) checks token counts.

import { join } from 'node:path';
import { SafetensorsFile } from '../formats/safetensors.js';

/** one shard's file, opened for its reduce */
export interface ShardFile {
  readonly path: string;
  readonly file: SafetensorsFile;
  /** the shard's windows [start, end) of `of` */
  readonly windows: readonly [number, number, number];
  /** the tensor `name` as float64, or `fail` naming the file and the tensors it has */
  float64(name: string, why: string): Promise<Float64Array>;
}

/**
 * `visit` each shard's `file` in `dirs` order; throws `fail(message)` when a file's windows metadata is
 * malformed or the shards do not cover 0..of exactly once, in order (`what` names the shards in messages)
 */
export async function forEachShard(dirs: readonly string[], file: string, what: string, fail: (message: string) => Error, visit: (s: ShardFile) => Promise<void>): Promise<void> {
  let next = 0;
  let of = -1;
  for (const dir of dirs) {
    const path = join(dir, file);
    const f = await SafetensorsFile.open(path);
    try {
      const windows = (f.metadata['windows'] ?? '').split(',').map(Number);
      if (windows.length !== 3 || windows.some((w) => !Number.isInteger(w))) throw fail(`${path}: metadata "windows" should be "start,end,of", found ${JSON.stringify(f.metadata['windows'])}`);
      const [start, end, total] = windows as [number, number, number];
      if (start !== next || (of >= 0 && total !== of)) throw fail(`the ${what} do not cover the calibration windows in order: ${path} holds windows [${start}, ${end}) of ${total}, expected ${next} next`);
      [next, of] = [end, total];
      await visit({
        path,
        file: f,
        windows: [start, end, total],
        float64: async (name, why) => {
          if (!f.has(name)) throw fail(`${path} has no "${name}" (has ${f.names().join(', ')}); ${why}`);
          const data = (await f.read(name)).data;
          return data instanceof Float64Array ? data : Float64Array.from(data as ArrayLike<number>);
        },
      });
    } finally {
      await f.close();
    }
  }
  if (next !== of) throw fail(`the ${dirs.length} ${what} cover windows [0, ${next}) of ${of}`);
}

/** acc += part, elementwise in float64 (the shard-order sum every reduce makes) */
export function addInto(acc: Float64Array, part: Float64Array): void {
  for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] as number) + (part[i] as number);
}
