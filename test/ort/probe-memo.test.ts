// Provider probe answers remembered across processes (src/ort/probe-memo.ts): reused only under the same
// fingerprint, which moves with the environment drivers read, beside the answers of other installs (the last
// MEMO_FINGERPRINTS fingerprints); checkProvider answers from the memo without a child
// process, and `fresh` (doctor) bypasses it.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MEMO_FINGERPRINTS, probeFingerprint, recalled, remember } from '../../src/ort/probe-memo.js';
import { checkProvider, ortPaths } from '../../src/ort/probe.js';

const saved = { TMPDIR: process.env['TMPDIR'], VK: process.env['VK_ICD_FILENAMES'] };
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'qf-probe-memo-'));
  // the memo lives under os.tmpdir(): this test's own
  process.env['TMPDIR'] = dir;
});

afterAll(() => {
  for (const [k, v] of [['TMPDIR', saved.TMPDIR], ['VK_ICD_FILENAMES', saved.VK]] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('probe memo', () => {
  test('the fingerprint is stable, and moves when a variable drivers read changes', () => {
    const a = probeFingerprint(ortPaths());
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(probeFingerprint(ortPaths())).toBe(a);
    process.env['VK_ICD_FILENAMES'] = '/nowhere/icd.json';
    expect(probeFingerprint(ortPaths())).not.toBe(a);
    if (saved.VK === undefined) delete process.env['VK_ICD_FILENAMES'];
    else process.env['VK_ICD_FILENAMES'] = saved.VK;
    expect(probeFingerprint(ortPaths())).toBe(a);
  });

  test('an answer is recalled under its fingerprint only', () => {
    remember('f1', 'webgpu:hw', { ok: false, detail: 'no hardware Vulkan adapter' });
    remember('f1', 'cuda:any', { ok: true, detail: 'a CUDA device' });
    expect(recalled('f1', 'webgpu:hw')).toEqual({ ok: false, detail: 'no hardware Vulkan adapter' });
    expect(recalled('f1', 'cuda:any')).toEqual({ ok: true, detail: 'a CUDA device' });
    expect(recalled('f1', 'webgpu:any')).toBeUndefined();
    expect(recalled('f2', 'webgpu:hw')).toBeUndefined();
    // another install's answers sit beside f1's
    remember('f2', 'webgpu:hw', { ok: true, detail: 'a hardware Vulkan adapter' });
    expect(recalled('f2', 'webgpu:hw')).toEqual({ ok: true, detail: 'a hardware Vulkan adapter' });
    expect(recalled('f1', 'webgpu:hw')).toEqual({ ok: false, detail: 'no hardware Vulkan adapter' });
  });

  test('the memo keeps the last MEMO_FINGERPRINTS fingerprints written', () => {
    for (let i = 0; i <= MEMO_FINGERPRINTS; i++) remember(`g${i}`, 'cuda:any', { ok: false, detail: `answer ${i}` });
    // g0 was written longest ago: dropped; the rest are kept
    expect(recalled('g0', 'cuda:any')).toBeUndefined();
    for (let i = 1; i <= MEMO_FINGERPRINTS; i++) expect(recalled(`g${i}`, 'cuda:any')).toEqual({ ok: false, detail: `answer ${i}` });
    // writing g1 again makes it the newest, so the next new fingerprint drops g2
    remember('g1', 'webgpu:hw', { ok: false, detail: 'again' });
    remember('g9', 'cuda:any', { ok: false, detail: 'answer 9' });
    expect(recalled('g1', 'cuda:any')).toEqual({ ok: false, detail: 'answer 1' });
    expect(recalled('g2', 'cuda:any')).toBeUndefined();
  });

  test('checkProvider answers from the memo without a child process; fresh probes', () => {
    const fingerprint = probeFingerprint(ortPaths())!;
    // an answer no real probe on this machine gives, so seeing it proves it came from the memo
    remember(fingerprint, 'webgpu:hw', { ok: false, detail: 'remembered answer' });
    const recall = checkProvider('webgpu', { hardwareOnly: true });
    expect(recall).toEqual({ provider: 'webgpu', ok: false, detail: 'remembered answer', ms: 0 });
    const fresh = checkProvider('webgpu', { hardwareOnly: true, fresh: true });
    expect(fresh.detail).not.toBe('remembered answer');
    expect(fresh.ms).toBeGreaterThan(0);
    // the fresh answer replaced the remembered one
    expect(recalled(fingerprint, 'webgpu:hw')?.detail).toBe(fresh.detail);
  });
});
