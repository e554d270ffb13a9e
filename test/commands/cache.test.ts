// `quantforge cache` and the store flags through the real CLI (bin/quantforge.js, built by the global
// setup) as a child process, against s3rver on loopback: ls/verify/gc/clean on an S3 store, and a store that
// cannot be used refused with one line and exit 2 before anything is computed.

import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { DirStore } from '../../src/cache/dir-store.js';
import { computeKey } from '../../src/cache/key.js';
import { S3Store } from '../../src/cache/s3-store.js';
import { parseStoreSpec } from '../../src/cache/store.js';
import { recordFor } from '../cache/cache-contract.js';
import { S3_KEY, startS3, type TestS3 } from '../cache/s3-server.js';

const REPO = resolve(import.meta.dirname, '../..');
const CLI = join(REPO, 'bin/quantforge.js');

let s3: TestS3;
let work: string;
let prefixes = 0;
beforeAll(async () => {
  s3 = await startS3();
  work = await mkdtemp(join(tmpdir(), 'qf-cache-cli-'));
});
afterAll(async () => {
  await s3.close();
  await rm(work, { recursive: true, force: true });
});

/** the environment of a user with credentials for the server and nothing else configured */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: work, AWS_ACCESS_KEY_ID: S3_KEY.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_KEY.secretAccessKey, ...extra };
  return env;
}

function cli(args: string[], env = userEnv()): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { cwd: work, env }, (err, stdout, stderr) => done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

describe('cache on an S3 store', () => {
  let url: string;
  let prefix: string;
  beforeEach(() => {
    prefix = `cli-${++prefixes}`;
    url = `s3://${s3.bucket}/${prefix}`;
  });

  async function fill(): Promise<{ keys: string[]; upload: string }> {
    const spec = parseStoreSpec(url);
    if (spec.kind !== 's3') throw new Error(url);
    const store = await S3Store.open(spec, { local: new DirStore(join(work, `fill-${prefix}`)), endpoint: s3.endpoint, client: s3.client });
    const keys: string[] = [];
    let upload = '';
    for (const a of [1, 2]) {
      const record = recordFor({ a });
      const pending = await store.begin('gptq', computeKey(record));
      await writeFile(join(pending.dir, 'layer.safetensors'), 'x'.repeat(100 * a));
      const e = await pending.commit({ record, stepId: `stage1.gptq/layer.${a}`, result: null, elapsedMs: 1 });
      keys.push(e.key);
      upload = e.meta.upload!;
    }
    return { keys, upload };
  }

  test('ls, verify, gc and clean', async () => {
    const { keys, upload } = await fill();
    const flags = ['--store', url, '--store-endpoint', s3.endpoint, '--cache-dir', join(work, 'local')];
    const ls = await cli(['cache', 'ls', ...flags, '--json']);
    expect(ls).toMatchObject({ code: 0, stderr: '' });
    const listed = JSON.parse(ls.stdout) as { root: string; entries: { key: string; step: string; bytes: number }[] };
    expect(listed.root).toBe(url);
    expect(listed.entries.map((e) => [e.key, e.step, e.bytes]).sort()).toEqual(
      [[keys[0], 'stage1.gptq/layer.1', 100], [keys[1], 'stage1.gptq/layer.2', 200]].sort(),
    );

    // the same store named by the environment; text output
    const text = await cli(['cache', 'ls', '--store-endpoint', s3.endpoint, '--cache-dir', join(work, 'local')], userEnv({ QUANTFORGE_STORE: url }));
    expect(text.stdout).toMatch(new RegExp(`2 entries, 300 B in ${url}\\n$`));

    expect(await cli(['cache', 'verify', ...flags])).toMatchObject({ code: 0, stdout: `2 entries verified, 0 damaged\n` });
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/gptq/${keys[1]}/${upload}/layer.safetensors`, Body: 'y'.repeat(200) }));
    const verify = await cli(['cache', 'verify', ...flags, '--json']);
    expect(verify.code).toBe(1);
    expect(JSON.parse(verify.stdout)).toMatchObject({ entries: 2, damaged: [{ key: keys[1], problem: expect.stringContaining('file "layer.safetensors" has sha256') }] });

    const gc = await cli(['cache', 'gc', ...flags, '--max-size', '0', '--json']);
    expect(gc.code).toBe(0);
    expect(JSON.parse(gc.stdout)).toMatchObject({ root: url, removed: [{}, {}], remainingBytes: 0 });
    expect(await cli(['cache', 'clean', ...flags])).toMatchObject({ code: 0, stdout: `removed 0 entries (0 B) from ${url}\n` });
    expect(JSON.parse((await cli(['cache', 'ls', ...flags, '--json'])).stdout)).toMatchObject({ entries: [] });
  });
});

describe('a store that cannot be used: one line on stderr, exit 2, nothing computed', () => {
  async function refused(args: string[], env = userEnv()): Promise<string> {
    const r = await cli(args, env);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n').filter((l) => l !== '')).toHaveLength(1);
    return r.stderr.trim();
  }

  test('an endpoint where nobody listens', async () => {
    const port = await freePort();
    expect(await refused(['cache', 'ls', '--store', `s3://${s3.bucket}/p`, '--store-endpoint', `http://127.0.0.1:${port}`])).toBe(
      `quantforge cache: store s3://${s3.bucket}/p: cannot reach http://127.0.0.1:${port} (ECONNREFUSED)`,
    );
  });

  test('a bucket that does not exist', async () => {
    expect(await refused(['cache', 'verify', '--store', 's3://missing-bucket/p', '--store-endpoint', s3.endpoint])).toBe(
      `quantforge cache: store s3://missing-bucket/p: bucket "missing-bucket" not found at ${s3.endpoint}`,
    );
  });

  test('credentials the server refuses', async () => {
    const line = await refused(['cache', 'ls', '--store', `s3://${s3.bucket}/p`, '--store-endpoint', s3.endpoint], userEnv({ AWS_ACCESS_KEY_ID: 'NOT-A-KEY' }));
    expect(line).toMatch(new RegExp(`^quantforge cache: store s3://${s3.bucket}/p: credentials rejected by ${s3.endpoint} while listing the bucket \\(InvalidAccessKeyId: `));
  });

  test('no credentials at all', async () => {
    const line = await refused(['cache', 'ls', '--store', `s3://${s3.bucket}/p`, '--store-endpoint', s3.endpoint], { PATH: process.env['PATH'], HOME: work });
    expect(line).toMatch(new RegExp(`^quantforge cache: store s3://${s3.bucket}/p: no AWS credentials found`));
  });

  test('run and plan refuse the store before reading the recipe or computing anything', async () => {
    const recipe = join(REPO, 'examples/quickstart/recipe.yaml');
    for (const command of ['run', 'plan']) {
      const line = await refused([command, recipe, '--store', 's3://missing-bucket/p', '--store-endpoint', s3.endpoint, '--cache-dir', join(work, `${command}-cache`)]);
      expect(line).toBe(`quantforge ${command}: store s3://missing-bucket/p: bucket "missing-bucket" not found at ${s3.endpoint}`);
      expect(existsSync(join(work, `${command}-cache`))).toBe(false);
    }
  });

  test('a store URL of another scheme, and an endpoint without an s3 store', async () => {
    expect(await refused(['cache', 'ls', '--store', 'gs://bucket/p'])).toMatch(/^quantforge cache: store gs:\/\/bucket\/p: unsupported scheme "gs:\/\/"/);
    expect(await refused(['cache', 'ls', '--store-endpoint', s3.endpoint])).toBe('quantforge cache: --store-endpoint needs an s3:// store (--store or $QUANTFORGE_STORE)');
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}
