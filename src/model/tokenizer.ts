// The model's tokenizer from tokenizer.json (+ tokenizer_config.json), through the @huggingface/tokenizers
// library (a faithful port of HF tokenizers; we never hand-write BPE). The package ships CommonJS only.
// Whatever the library makes of a malformed file is reported as a TokenizerError naming the file.

import { createRequire } from 'node:module';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, ReasonedError, type ModelReason } from '../diag/failure.js';
import { causeText, describeValue } from '../diag/quote.js';
import { NeedsWholeText, SegmentEncoder, segmentIneligibility, SegmentSplitter, type LibraryTokenizer } from './segment-encoder.js';

interface HfTokenizer extends LibraryTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
}

type HfTokenizerClass = new (tokenizer: object, config: object) => HfTokenizer;
let tokenizerClass: HfTokenizerClass | undefined;

/** the library, loaded on first use (it is large, and most commands never tokenize) */
function hfTokenizerClass(): HfTokenizerClass {
  tokenizerClass ??= (createRequire(import.meta.url)('@huggingface/tokenizers') as { Tokenizer: HfTokenizerClass }).Tokenizer;
  return tokenizerClass;
}

export interface EncodedPrefix {
  /** at least `limit` ids (all of them when the text ran out first): a prefix of encoding the whole text */
  ids: number[];
  /** the whole text was read and encoded */
  complete: boolean;
}

export class TokenizerError extends InputError<Extract<ModelReason, 'tokenizer-missing' | 'tokenizer-unreadable' | 'tokenizer-invalid' | 'tokenizer-failed' | 'bad-token-id'>> {}

export interface Tokenizer {
  /** ids of `text` with the model's default special tokens (one BOS at the start for Llama) */
  encode(text: string): number[];
  /**
   * the first ids of the text the pieces make up, equal to `encode(pieces.join(''))` cut to `limit` ids,
   * reading pieces only until `limit` ids are known (all of them when the tokenizer cannot cut exactly)
   */
  encodePrefix(pieces: Iterable<string>, limit?: number): EncodedPrefix;
  decode(ids: readonly number[], skipSpecial?: boolean): string;
  readonly eosTokenId: number | null;
}

/** the largest tokenizer.json in the wild is about 35 MB; anything far above is not one */
const MAX_TOKENIZER_BYTES = 256 << 20;

function readJson(file: string): Record<string, unknown> {
  const fail = (detail: string) => new TokenizerError('tokenizer-unreadable', `${file}: cannot be read (${detail})`, { file });
  let size: number;
  try {
    const s = statSync(file);
    if (!s.isFile()) throw fail('not a regular file');
    size = s.size;
  } catch (e) {
    throw e instanceof TokenizerError ? e : fail((e as NodeJS.ErrnoException).code ?? String(e));
  }
  if (size > MAX_TOKENIZER_BYTES) throw fail(`${size} bytes, above the ${MAX_TOKENIZER_BYTES}-byte limit`);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(file)));
  } catch (e) {
    throw fail(`not UTF-8 JSON: ${causeText(e)}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw fail('expected a JSON object');
  return raw as Record<string, unknown>;
}

/** the parts of tokenizer.json that may hold a `pattern`, and the keys of their Sequence children */
const PATTERN_SECTIONS: Record<string, string> = { normalizer: 'normalizers', pre_tokenizer: 'pretokenizers', decoder: 'decoders' };

/**
 * every Replace and Split of the normalizer, pre-tokenizer and decoder has a pattern {"String": …} or
 * {"Regex": …}: the library only warns on any other (console.warn) and skips the replacement or the split,
 * which would tokenize every text differently without an error
 */
function checkPatterns(raw: Record<string, unknown>, file: string): void {
  const visit = (node: unknown, field: string, children: string): void => {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return;
    const part = node as Record<string, unknown>;
    const list = part[children];
    if (part['type'] === 'Sequence' && Array.isArray(list)) list.forEach((child, i) => visit(child, `${field}.${children}[${i}]`, children));
    if (part['type'] !== 'Replace' && part['type'] !== 'Split') return;
    const pattern = part['pattern'];
    const keys = typeof pattern === 'object' && pattern !== null && !Array.isArray(pattern) ? Object.keys(pattern) : [];
    const value = keys.length === 1 ? (pattern as Record<string, unknown>)[keys[0]!] : undefined;
    if ((keys[0] === 'String' || keys[0] === 'Regex') && typeof value === 'string') return;
    const where = `${field}.pattern`;
    const found = pattern === undefined ? 'none' : describeValue(pattern);
    throw new TokenizerError('tokenizer-invalid', `${file}: ${where} of the ${String(part['type'])} is ${found}; expected {"String": "…"} or {"Regex": "…"}`, { file, field: where });
  };
  for (const [section, children] of Object.entries(PATTERN_SECTIONS)) visit(raw[section], section, children);
}

export function loadTokenizer(dir: string): Tokenizer {
  const file = join(dir, 'tokenizer.json');
  if (!existsSync(file)) {
    throw new TokenizerError('tokenizer-missing', `${dir}: no tokenizer.json (quantforge reads fast-tokenizer files only; sentencepiece .model files are not loaded)`, { file });
  }
  const configFile = join(dir, 'tokenizer_config.json');
  const config = existsSync(configFile) ? readJson(configFile) : {};
  const json = readJson(file);
  checkPatterns(json, file);
  let tok: HfTokenizer;
  try {
    tok = new (hfTokenizerClass())(json, config);
  } catch (e) {
    if (e instanceof TokenizerError) throw e;
    throw new TokenizerError('tokenizer-invalid', `${file}: not a tokenizer the tokenizers library can load (${causeText(e)})`, { file });
  }
  const modelConfig = existsSync(join(dir, 'config.json')) ? readJson(join(dir, 'config.json')) : {};
  const eos = modelConfig['eos_token_id'];
  // an id past the embedding table would fail (or worse) only when the windows reach the model
  const vocab = modelConfig['vocab_size'];
  const vocabLimit = Number.isSafeInteger(vocab) && (vocab as number) > 0 ? (vocab as number) : Number.MAX_SAFE_INTEGER;
  const checked = (ids: unknown): number[] => {
    if (!Array.isArray(ids)) throw new TokenizerError('tokenizer-failed', `${file}: encoding returned no ids`, { file });
    const bad = ids.findIndex((id) => !Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= vocabLimit);
    if (bad >= 0) {
      const expected = vocabLimit === Number.MAX_SAFE_INTEGER ? 'non-negative integers' : `integers in [0, ${vocabLimit}) (config.json vocab_size ${vocabLimit})`;
      throw new TokenizerError('bad-token-id', `${file}: encoding produced token id ${String(ids[bad])} at position ${bad}; expected ${expected}: check model.vocab and added_tokens`, { file, field: 'model.vocab' });
    }
    return ids as number[];
  };
  // word-by-word encoding where it is exact (segment-encoder.ts); any file it does not understand is encoded whole
  let segments: SegmentEncoder | undefined;
  try {
    segments = segmentIneligibility(json, config, tok) === undefined ? new SegmentEncoder(json, tok) : undefined;
  } catch {
    segments = undefined;
  }
  const whole = (text: string): number[] => tok.encode(text).ids;
  const prefix = (pieces: Iterable<string>, limit: number): EncodedPrefix => {
    if (!segments) return { ids: whole([...pieces].join('')), complete: true };
    const seen: string[] = [];
    const iterator = pieces[Symbol.iterator]();
    try {
      return encodeSegments(segments, iterator, seen, limit);
    } catch (e) {
      if (!(e instanceof NeedsWholeText)) throw e;
      for (let r = iterator.next(); !r.done; r = iterator.next()) seen.push(r.value);
      return { ids: whole(seen.join('')), complete: true };
    }
  };
  const encodePrefix = (pieces: Iterable<string>, limit = Infinity): EncodedPrefix => {
    let out: EncodedPrefix;
    try {
      out = prefix(pieces, limit);
    } catch (e) {
      // errors of the dataset reader pass; the library's are the tokenizer's
      if (e instanceof ReasonedError) throw e;
      throw new TokenizerError('tokenizer-failed', `${file}: encoding failed (${causeText(e)})`, { file });
    }
    return { ids: checked(out.ids), complete: out.complete };
  };
  return {
    encode: (text) => encodePrefix([text]).ids,
    encodePrefix,
    decode: (ids, skipSpecial = false) => {
      try {
        return tok.decode([...ids], { skip_special_tokens: skipSpecial });
      } catch (e) {
        throw new TokenizerError('tokenizer-failed', `${file}: decoding failed (${causeText(e)})`, { file });
      }
    },
    eosTokenId: typeof eos === 'number' ? eos : null,
  };
}

/** ids segment by segment until `limit` are known; `seen` keeps the pieces read, for a fall back to the library */
function encodeSegments(enc: SegmentEncoder, pieces: Iterator<string>, seen: string[], limit: number): EncodedPrefix {
  const ids = [...enc.before];
  const splitter = new SegmentSplitter();
  let lastUnk = false;
  // segments are encoded one by one and never change the ids before them, so encoding stops at the segment
  // that reaches `limit`, not at the end of the piece (a file's pieces are MiB-sized)
  const add = (segs: readonly string[]): boolean => {
    for (const s of segs) {
      lastUnk = enc.append(ids, s, lastUnk);
      if (ids.length >= limit) return true;
    }
    return false;
  };
  for (let r = pieces.next(); !r.done; r = pieces.next()) {
    seen.push(r.value);
    if (add(splitter.push(r.value))) return { ids, complete: false };
  }
  add(splitter.finish());
  ids.push(...enc.after);
  return { ids, complete: true };
}
