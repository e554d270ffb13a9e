import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { exampleTokenizer } from '../../src/model/example-tokenizer.js';
import { segmentIneligibility, SegmentSplitter, type LibraryTokenizer } from '../../src/model/segment-encoder.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { datasetPieces, readDatasetText } from '../../src/model/windows.js';

const { Tokenizer } = createRequire(import.meta.url)('@huggingface/tokenizers') as {
  Tokenizer: new (json: object, config: object) => LibraryTokenizer & { encode(t: string): { ids: number[] } };
};
const root = mkdtempSync(join(tmpdir(), 'qf-tokenizer-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let dirs = 0;
function tokenizerDir(json: object, config: object): string {
  const dir = join(root, `t${dirs++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}
const example = exampleTokenizer(256);
const exampleDir = tokenizerDir(example.tokenizer, example.config);
const library = new Tokenizer(example.tokenizer, example.config);

/** a character-level tokenizer (no merges) whose unknown characters fuse, and no byte fallback */
function charTokenizer(): { json: Record<string, unknown>; config: object } {
  const chars = ['<unk>', '<s>', '</s>', '▁', ...'abcdefghij.'];
  const json = JSON.parse(JSON.stringify(example.tokenizer)) as Record<string, Record<string, unknown>>;
  json['model'] = { ...json['model'], vocab: Object.fromEntries(chars.map((c, i) => [c, i])), merges: [], byte_fallback: false, fuse_unk: true };
  return { json, config: example.config };
}

const TEXTS = [
  '',
  'the cat saw the dog',
  '  two leading spaces, and  a double one ',
  'lines\nand\n\nparagraphs\n the end.',
  'unknown bytes: é ü 日本 🙂 and a literal ▁ mark▁inside',
  'special <s> and </s> written in the text',
];

describe('tokenizer', () => {
  test('the example tokenizer takes the segment path', () => {
    expect(segmentIneligibility(example.tokenizer as Record<string, unknown>, example.config as Record<string, unknown>, library)).toBeUndefined();
  });

  test('encode equals the library encoding the whole text', () => {
    const tok = loadTokenizer(exampleDir);
    for (const t of TEXTS) expect(tok.encode(t), JSON.stringify(t)).toEqual(library.encode(t).ids);
  });

  test('encodePrefix of text in arbitrary pieces is a prefix of the whole encoding, with at least the ids asked for', () => {
    const tok = loadTokenizer(exampleDir);
    const word = fc.constantFrom('the', 'cat', 'saw', 'a', 'dog', 'é', '\n', '.', 'tree', ' ', '  ', 'x', '▁', 'mom');
    fc.assert(
      fc.property(fc.array(word, { maxLength: 40 }), fc.array(fc.nat(200), { maxLength: 6 }), fc.nat(60), (words, cuts, limit) => {
        const text = words.join(words.length % 2 ? ' ' : '');
        const at = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const pieces = [0, ...at].map((a, i) => text.slice(a, at[i] ?? text.length));
        const whole = library.encode(text).ids;
        const p = tok.encodePrefix(pieces, limit);
        expect(p.ids).toEqual(whole.slice(0, p.ids.length));
        expect(p.ids.length >= Math.min(limit, whole.length)).toBe(true);
        if (p.complete) expect(p.ids).toEqual(whole);
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  test('encodePrefix stops at the word that reaches the limit, inside one large piece', () => {
    const tok = loadTokenizer(exampleDir);
    const text = Array.from({ length: 5000 }, (_, i) => ['the', 'cat', 'saw', 'a', 'dog'][i % 5]).join(' ');
    const whole = library.encode(text).ids;
    const longest = Math.max(...['the', 'cat', 'saw', 'a', 'dog'].map((w) => library.encode(` ${w}`).ids.length));
    const p = tok.encodePrefix([text], 100);
    expect(p.complete).toBe(false);
    expect(p.ids).toEqual(whole.slice(0, p.ids.length));
    expect(p.ids.length).toBeGreaterThanOrEqual(100);
    expect(p.ids.length).toBeLessThan(100 + longest + 2);
    expect(whole.length).toBeGreaterThan(1000);
  });

  test('runs of unknown characters fuse across words as the library fuses them', () => {
    const { json, config } = charTokenizer();
    const lib = new Tokenizer(json, config);
    expect(segmentIneligibility(json, config as Record<string, unknown>, lib)).toBeUndefined();
    const tok = loadTokenizer(tokenizerDir(json, config));
    for (const t of ['ab xy zc', 'ab x y', 'xx yy zz a', ' q', 'q ', 'a  q  b', 'abc']) expect(tok.encode(t), t).toEqual(lib.encode(t).ids);
  });

  test('a merge that could join across "▁" makes the tokenizer encode whole texts', () => {
    const json = JSON.parse(JSON.stringify(example.tokenizer)) as { model: { merges: string[]; vocab: Record<string, number> } };
    json.model.merges.push('e ▁');
    json.model.vocab['e▁'] = Object.keys(json.model.vocab).length;
    const lib = new Tokenizer(json, example.config);
    expect(segmentIneligibility(json as unknown as Record<string, unknown>, example.config as Record<string, unknown>, lib)).toMatch(/join across/);
    const tok = loadTokenizer(tokenizerDir(json, example.config));
    const text = 'the tree the house';
    expect(tok.encode(text)).toEqual(lib.encode(text).ids);
    expect(tok.encodePrefix([text], 2)).toEqual({ ids: lib.encode(text).ids, complete: true });
  });

  test('the splitter cuts before every "▁" and keeps the open word for the next piece (segments by their bodies)', () => {
    const s = new SegmentSplitter();
    expect(s.push('the ca')).toEqual(['the']);
    expect(s.push('t  sat')).toEqual(['cat', '']);
    expect(s.finish()).toEqual(['sat']);
    // a text that starts or ends with a space has an empty first or last segment ("▁"), and a "▁" in the text cuts
    const t = new SegmentSplitter();
    expect(t.push(' a▁b ')).toEqual(['', 'a', 'b']);
    expect(t.finish()).toEqual(['']);
    expect(new SegmentSplitter().finish()).toEqual([]);
  });
});

describe('dataset pieces', () => {
  test('a JSONL file is its documents joined by a blank line, read in pieces', () => {
    const file = join(root, 'docs.jsonl');
    writeFileSync(file, `${JSON.stringify({ text: 'first doc' })}\n\n${JSON.stringify({ text: 'second', other: 1 })}\r\n${JSON.stringify({ body: 'x', text: 'third' })}`);
    expect(readDatasetText(file)).toBe('first doc\n\nsecond\n\nthird');
    expect([...datasetPieces(file)]).toEqual(['first doc', '\n\nsecond', '\n\nthird']);
  });

  test('a plain file in pieces is the file', () => {
    const file = join(root, 'plain.txt');
    writeFileSync(file, 'héllo wörld\n'.repeat(200_000));
    const pieces = [...datasetPieces(file)];
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join('')).toBe('héllo wörld\n'.repeat(200_000));
  });
});
