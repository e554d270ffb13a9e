// tokenizer.ggml.* metadata from a HuggingFace tokenizer.json (+ tokenizer_config.json), for the
// SentencePiece-style BPE tokenizers of Llama-family models (HF's LlamaConverter layout: BPE model over
// `▁`-pieces, optional byte fallback, normalizer Prepend("▁") + Replace(" " → "▁")). llama.cpp runs them
// with its `llama` (SPM) tokenizer, which merges the adjacent pair whose merged piece has the highest score.
//
// Where the score comes from: llama.cpp's converter reads scores from tokenizer.model; from a
// tokenizer.json alone (gguf-py LlamaHfVocab) it writes −1000 for every token, and then llama.cpp merges
// left to right instead of by rank: ids differ from HF's. A tokenizer.json BPE ranks merges instead, and HF's
// LlamaConverter derived those ranks from the SentencePiece scores (SentencePieceExtractor orders merges by
// the merged piece's score), so quantforge writes score(t) = −(rank of the first merge that produces t): the
// SPM algorithm then prefers the same pairs the BPE merges would. Tokens no merge produces get −(merges + id)
// (below every merged piece), byte pieces and special tokens 0, as SentencePiece scores them.
//
// Token types (llama_token_type): 1 NORMAL, 2 UNKNOWN (the unk token), 3 CONTROL (special added tokens),
// 4 USER_DEFINED (other added tokens), 5 UNUSED (padding up to the model's vocab size), 6 BYTE (<0xXX> with
// byte fallback). Special ids and add_bos/add_eos come from tokenizer_config.json (its strings looked up in
// the vocabulary), else config.json's bos_token_id / eos_token_id.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { array, bool, str, u32, type GgufValue } from './values.js';
import { ReasonedError } from '../../diag/failure.js';

export class GgufTokenizerError extends ReasonedError<'gguf-tokenizer-unsupported'> {
  constructor(message: string) {
    super('gguf-tokenizer-unsupported', message);
  }
}

export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

export interface GgufTokenizer {
  readonly entries: [string, GgufValue][];
  readonly tokens: readonly string[];
  readonly scores: Float32Array;
  readonly types: Int32Array;
  /** multi-character normal tokens no merge produces: llama.cpp may still form them, HF never does */
  readonly unmergedPieces: number;
  /** what llama.cpp will do differently from the HF tokenizer */
  readonly warnings: readonly string[];
}

type Json = Record<string, unknown>;

const readJson = (file: string): Json => JSON.parse(readFileSync(file, 'utf8')) as Json;

function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json)['content'] === 'string') return (v as Json)['content'] as string;
  return undefined;
}

function addsSpacePrefix(tok: Json): boolean {
  const norms = (n: unknown): Json[] => {
    if (typeof n !== 'object' || n === null) return [];
    const o = n as Json;
    return o['type'] === 'Sequence' ? (o['normalizers'] as unknown[]).flatMap(norms) : [o];
  };
  if (norms(tok['normalizer']).some((n) => n['type'] === 'Prepend' && n['prepend'] === '▁')) return true;
  const pre = tok['pre_tokenizer'] as Json | null;
  return pre?.['type'] === 'Metaspace' && pre['prepend_scheme'] !== 'never' && pre['add_prefix_space'] !== false;
}

/** the tokenizer.ggml.* entries for the model directory `dir` whose embedding has `vocabSize` rows */
export function tokenizerMetadata(dir: string, vocabSize: number): GgufTokenizer {
  const file = join(dir, 'tokenizer.json');
  if (!existsSync(file)) throw new GgufTokenizerError(`${dir}: no tokenizer.json; GGUF export converts tokenizer.json (sentencepiece .model files are not read)`);
  const tok = readJson(file);
  const model = tok['model'] as Json;
  const pre = tok['pre_tokenizer'] as Json | null;
  if (model['type'] !== 'BPE' || pre?.['type'] === 'ByteLevel') {
    throw new GgufTokenizerError(
      `${file}: model type ${JSON.stringify(model['type'])}${pre ? ` with pre-tokenizer ${JSON.stringify(pre['type'])}` : ''} is not supported; ` +
        'GGUF export converts SentencePiece-style BPE tokenizers (Llama 1/2, Mistral), not byte-level BPE (GPT-2, Llama 3) or Unigram',
    );
  }
  const config = existsSync(join(dir, 'tokenizer_config.json')) ? readJson(join(dir, 'tokenizer_config.json')) : {};
  const modelConfig = existsSync(join(dir, 'config.json')) ? readJson(join(dir, 'config.json')) : {};

  const vocab = new Map(Object.entries(model['vocab'] as Record<string, number>));
  const added = (tok['added_tokens'] as Json[] | undefined) ?? [];
  for (const a of added) vocab.set(a['content'] as string, a['id'] as number);
  const n = vocabSize;
  const outside = [...vocab].find(([, id]) => id < 0 || id >= n);
  if (outside) throw new GgufTokenizerError(`${file}: token ${JSON.stringify(outside[0])} has id ${outside[1]}, outside the model's vocabulary of ${n}`);
  const tokens: string[] = new Array(n);
  for (const [t, id] of vocab) tokens[id] = t;

  const merges = ((model['merges'] as unknown[] | undefined) ?? []).map((m) => (typeof m === 'string' ? m.split(' ') : (m as string[])));
  const rank = new Map<string, number>();
  merges.forEach(([a, b], r) => {
    if (!rank.has(`${a}${b}`)) rank.set(`${a}${b}`, r);
  });
  const byteFallback = model['byte_fallback'] === true;
  const unk = tokenText(model['unk_token']) ?? tokenText(config['unk_token']);
  const special = new Set(added.filter((a) => a['special'] === true).map((a) => a['content'] as string));
  const addedNormal = new Set(added.filter((a) => a['special'] !== true).map((a) => a['content'] as string));

  const scores = new Float32Array(n);
  const types = new Int32Array(n);
  let unmergedPieces = 0;
  for (let id = 0; id < n; id++) {
    const t = tokens[id];
    if (t === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TOKEN_TYPE.unused;
      continue;
    }
    if (t === unk) types[id] = TOKEN_TYPE.unknown;
    else if (special.has(t)) types[id] = TOKEN_TYPE.control;
    else if (addedNormal.has(t)) types[id] = TOKEN_TYPE.userDefined;
    else if (byteFallback && /^<0x[0-9A-Fa-f]{2}>$/.test(t)) types[id] = TOKEN_TYPE.byte;
    else {
      types[id] = TOKEN_TYPE.normal;
      const r = rank.get(t);
      scores[id] = r !== undefined ? 0 - r : -(merges.length + id);
      if (r === undefined && [...t].length > 1) unmergedPieces++;
    }
  }

  const idOf = (key: string, configKey: string): number | undefined => {
    const text = tokenText(config[key]);
    const id = text !== undefined ? vocab.get(text) : undefined;
    const fallback = modelConfig[configKey];
    return id ?? (typeof fallback === 'number' ? fallback : undefined);
  };
  const entries: [string, GgufValue][] = [
    ['tokenizer.ggml.model', str('llama')],
    ['tokenizer.ggml.pre', str('default')],
    ['tokenizer.ggml.tokens', array('string', tokens)],
    ['tokenizer.ggml.scores', array('float32', scores)],
    ['tokenizer.ggml.token_type', array('int32', types)],
  ];
  const ids: [string, number | undefined][] = [
    ['bos', idOf('bos_token', 'bos_token_id')],
    ['eos', idOf('eos_token', 'eos_token_id')],
    ['unknown', unk !== undefined ? vocab.get(unk) : undefined],
    ['padding', idOf('pad_token', 'pad_token_id')],
  ];
  for (const [name, id] of ids) if (id !== undefined) entries.push([`tokenizer.ggml.${name}_token_id`, u32(id)]);
  entries.push(['tokenizer.ggml.add_bos_token', bool(config['add_bos_token'] !== false)]);
  entries.push(['tokenizer.ggml.add_eos_token', bool(config['add_eos_token'] === true)]);
  entries.push(['tokenizer.ggml.add_space_prefix', bool(addsSpacePrefix(tok))]);
  if (typeof config['chat_template'] === 'string') entries.push(['tokenizer.chat_template', str(config['chat_template'])]);
  const warnings: string[] = [];
  if (!byteFallback && !tokens.includes('\n')) {
    warnings.push(
      `${file}: no byte fallback and no "\\n" token: llama.cpp's SPM tokenizer aborts the process (std::out_of_range in byte_to_token) ` +
        'on any character outside the vocabulary, where HF maps it to <unk>; node-llama-cpp tokenizes "\\n" while loading a model, so it cannot load this file',
    );
  }
  if (unmergedPieces > 0) warnings.push(`${file}: ${unmergedPieces} multi-character tokens come from no merge; llama.cpp may form them where HF does not`);
  return { entries, tokens, scores, types, unmergedPieces, warnings };
}
