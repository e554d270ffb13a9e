// A Hessian set aside while GPTQ writes its inverse factor into the Hessian's own buffer (gptqFactor's
// `overwrite`), so one in × in float64 matrix is live per input site instead of two: down_proj's on a 1B model is
// 5632² × 8 B = 242 MiB. The factorisation may fail (a singular H at the requested dampening) and then needs H
// again for the next dampening; so H is written to a temporary file first (small ones are copied in memory), read
// back only on a failure, and the file is removed when the site is done. The file lives in the step's pending
// entry directory (ctx.outDir), never in the committed entry: a run killed meanwhile leaves it where the store
// removes unfinished entries (the next begin of that step, `quantforge cache gc`), not in the system's temp folder.

import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Overwritable } from '../algo/gptq.js';
import { ReasonedError } from '../diag/failure.js';

/** Hessians below this many bytes are copied in memory instead of written to a file */
export const SPILL_BYTES = 16 * 2 ** 20;

export interface HessianSpill extends Overwritable {
  /** removes the file (if any); restore must not be called after */
  close(): Promise<void>;
}

function bytesOf(h: Float64Array): Uint8Array {
  return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
}

/** H's bytes kept where restore can write them back into a buffer of H's size: a file in a new folder under `dir` */
export async function spillHessian(h: Float64Array, dir: string): Promise<HessianSpill> {
  if (h.byteLength < SPILL_BYTES) {
    const copy = Float64Array.from(h);
    return { restore: async (into) => void into.set(copy), close: async () => {} };
  }
  const folder = await mkdtemp(join(dir, '.hessian-'));
  const file = join(folder, 'hessian.f64');
  try {
    await writeFile(file, bytesOf(h));
  } catch (e) {
    await rm(folder, { recursive: true, force: true });
    throw e;
  }
  return {
    restore: async (into) => {
      const bytes = bytesOf(into);
      const fh = await open(file, 'r');
      try {
        for (let at = 0; at < bytes.length; ) {
          const { bytesRead } = await fh.read(bytes, at, bytes.length - at, at);
          if (bytesRead === 0) throw new ReasonedError('short-read', `the spilled Hessian ${file} ended after ${at} of ${bytes.length} bytes; was it truncated?`);
          at += bytesRead;
        }
      } finally {
        await fh.close();
      }
    },
    close: () => rm(folder, { recursive: true, force: true }),
  };
}
