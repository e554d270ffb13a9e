// The model's tokenizer from tokenizer.json (+ tokenizer_config.json), through the @huggingface/tokenizers
// library (a faithful port of HF tokenizers; we never hand-write BPE). The package ships CommonJS only.

import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ReasonedError } from '../diag/failure.js';
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

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new ReasonedError('tokenizer-unreadable', `${file}: cannot read tokenizer file (${e instanceof Error ? e.message : String(e)})`);
  }
}

export function loadTokenizer(dir: string): Tokenizer {
  const file = join(dir, 'tokenizer.json');
  if (!existsSync(file)) {
    throw new ReasonedError('tokenizer-missing', `${dir}: no tokenizer.json (quantforge reads fast-tokenizer files only; sentencepiece .model files are not loaded)`);
  }
  const configFile = join(dir, 'tokenizer_config.json');
  const config = existsSync(configFile) ? readJson(configFile) : {};
  const json = readJson(file);
  const tok = new (hfTokenizerClass())(json, config);
  const modelConfig = existsSync(join(dir, 'config.json')) ? readJson(join(dir, 'config.json')) : {};
  const eos = modelConfig['eos_token_id'];
  const segments = segmentIneligibility(json, config, tok) === undefined ? new SegmentEncoder(json, tok) : undefined;
  const whole = (text: string): number[] => tok.encode(text).ids;
  const encodePrefix = (pieces: Iterable<string>, limit = Infinity): EncodedPrefix => {
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
  return {
    encode: (text) => encodePrefix([text]).ids,
    encodePrefix,
    decode: (ids, skipSpecial = false) => tok.decode([...ids], { skip_special_tokens: skipSpecial }),
    eosTokenId: typeof eos === 'number' ? eos : null,
  };
}

/** ids segment by segment until `limit` are known; `seen` keeps the pieces read, for a fall back to the library */
function encodeSegments(enc: SegmentEncoder, pieces: Iterator<string>, seen: string[], limit: number): EncodedPrefix {
  const ids = [...enc.before];
  const splitter = new SegmentSplitter();
  let lastUnk = false;
  const add = (segs: readonly string[]): void => {
    for (const s of segs) lastUnk = enc.append(ids, s, lastUnk);
  };
  for (let r = pieces.next(); !r.done; r = pieces.next()) {
    seen.push(r.value);
    add(splitter.push(r.value));
    if (ids.length >= limit) return { ids, complete: false };
  }
  add(splitter.finish());
  ids.push(...enc.after);
  return { ids, complete: true };
}
