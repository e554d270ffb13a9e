// The model's tokenizer from tokenizer.json (+ tokenizer_config.json), through the @huggingface/tokenizers
// library (a faithful port of HF tokenizers; we never hand-write BPE). The package ships CommonJS only.

import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ReasonedError } from '../diag/failure.js';

interface HfTokenizer {
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

export interface Tokenizer {
  /** ids of `text` with the model's default special tokens (one BOS at the start for Llama) */
  encode(text: string): number[];
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
  const tok = new (hfTokenizerClass())(readJson(file), config);
  const modelConfig = existsSync(join(dir, 'config.json')) ? readJson(join(dir, 'config.json')) : {};
  const eos = modelConfig['eos_token_id'];
  return {
    encode: (text) => tok.encode(text).ids,
    decode: (ids, skipSpecial = false) => tok.decode([...ids], { skip_special_tokens: skipSpecial }),
    eosTokenId: typeof eos === 'number' ? eos : null,
  };
}
