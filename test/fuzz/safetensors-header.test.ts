// Fuzzing the safetensors reader (targets/safetensors-header.ts), plus the cases too big for 1,000 runs and
// the counterexamples fuzzing found, each replayed as a named regression.

import { writeFile } from 'node:fs/promises';
import { describe, expect, test } from 'vitest';
import { readHeaderSync, SafetensorsError } from '../../src/formats/safetensors.js';
import { formatOutcomes, runFuzz, runOnce } from './harness.js';
import { safetensorsHeaderTarget, type HeaderCase } from './targets/safetensors-header.js';

describe('fuzz: safetensors headers', () => {
  test('every mutated file ends in ok or a named SafetensorsError naming the file', async () => {
    const report = await runFuzz(safetensorsHeaderTarget);
    console.log(`${report.target}: ${report.runs} cases in ${report.seconds.toFixed(1)} s: ${formatOutcomes(report.outcomes)}`);
    expect(report.outcomes.get('ok') ?? 0).toBeGreaterThan(0);
    // every named error is a malformed input or recipe: the CLI exits 2 for it, never 1 (a failed step)
    expect(report.exits.get(1) ?? 0).toBe(0);
    expect(report.outcomes.size).toBeGreaterThan(15);
  });
});

function withHeader(text: string): Uint8Array {
  const json = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

async function headerError(root: string, text: string): Promise<SafetensorsError> {
  const path = `${root}.safetensors`;
  await writeFile(path, withHeader(text));
  try {
    readHeaderSync(path);
  } catch (e) {
    return e as SafetensorsError;
  }
  throw new Error('expected the header to be refused');
}

describe('safetensors headers too big for the fuzz runs', () => {
  test('a shape nested 100 000 arrays deep is refused in one short line', async () => {
    const deep = `${'['.repeat(100_000)}1${']'.repeat(100_000)}`;
    const err = await headerError(`/tmp/qf-deep-${process.pid}`, `{"w":{"dtype":"F32","shape":${deep},"data_offsets":[0,4]}}`);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect(err.reason).toBe('bad-shape');
    expect(err.message).toContain('"w"');
    expect(err.message.length).toBeLessThan(300);
  });

  test('metadata nested 100 000 objects deep is refused in one short line', async () => {
    const deep = `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`;
    const err = await headerError(`/tmp/qf-deep-meta-${process.pid}`, `{"__metadata__":${deep}}`);
    expect(err.reason).toBe('metadata-not-string');
    expect(err.message.length).toBeLessThan(300);
  });

  test('an 8 MB header of 150 000 zero-sized tensors is read (linear time: about 2 s here)', async () => {
    const parts: string[] = [];
    for (let i = 0, size = 0; size < 8 << 20; i++) {
      const part = `"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`;
      parts.push(part);
      size += part.length + 1;
    }
    const path = `/tmp/qf-huge-${process.pid}.safetensors`;
    await writeFile(path, withHeader(`{${parts.join(',')}}`));
    const t0 = performance.now();
    expect(readHeaderSync(path).tensors.size).toBe(parts.length);
    expect(performance.now() - t0).toBeLessThan(30_000);
  });
});

// counterexamples fuzzing found (seed 20250015), shrunk by fast-check, each fixed in src
const REGRESSIONS: Record<string, { input: HeaderCase; outcome: string }> = {
  // describe() printed any array of ≤ 8 elements whole: a dtype nested 1000 deep made a 2 KB message, 100 000
  // deep a stack overflow (JSON.stringify recursion) instead of a named error
  'a dtype that is an array nested 1000 deep (path 66:2:2:3:2:3:3:3:3)': {
    input: { tensors: [{ name: 'constructor', code: 'F64', shape: [] }], metadata: null, mutations: [{ kind: 'deep', tensor: 0, field: 'dtype', depth: 1000, object: false }] },
    outcome: 'unknown-dtype',
  },
};

describe('fuzz regressions: safetensors headers', () => {
  for (const [name, { input, outcome }] of Object.entries(REGRESSIONS)) {
    test(name, async () => {
      expect(await runOnce(safetensorsHeaderTarget, input)).toBe(outcome);
    });
  }
});
