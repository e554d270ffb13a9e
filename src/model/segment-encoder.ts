// Exact word-at-a-time encoding for SentencePiece-style BPE tokenizers (Llama 1/2, TinyStories, the example
// model): normalizer Prepend("▁") + Replace(" " → "▁"), no pre-tokenizer, so the library runs BPE on the
// whole text as one word (slow: a heap over every character, nothing cached). Why cutting it is exact:
//
//   1. After normalization the text is s₀ s₁ … where every segment sᵢ starts with "▁" and holds no other "▁".
//   2. BPE only merges adjacent symbols (a, b) listed in the merges. When no merge has a "▁" in b, nor in a
//      past a's first character (checked on the merge list at load), no symbol ever holds a "▁" past its first
//      character, so no merge joins the last symbol of sᵢ with the first of sᵢ₊₁ (that one starts with "▁").
//   3. With no merge across a boundary, the lowest-rank-first (leftmost on ties) merge order restricted to one
//      segment is the order BPE alone on that segment follows: BPE(text) = BPE(s₀) ‖ BPE(s₁) ‖ ….
//   4. Vocabulary lookup and byte fallback act token by token. fuse_unk turns every run of unknown tokens into
//      one, across segments too: `append` drops a segment's leading unknown after an unknown. Added tokens
//      (`<s>` written in the text) are split out before normalization: a segment holding one sends the whole
//      text to the library.
//
// So ids(text) = specials before ‖ ids(s₀) ‖ ids(s₁) ‖ … ‖ specials after, each segment encoded once (a Map
// caches them: running text repeats its words), and a prefix of the text ending before a "▁" encodes to a
// prefix of the ids: calibration stops reading once its windows are full. Tokenizers of any other shape
// answer `undefined` from `segmentEncoder`, and callers encode whole texts with the library.

/** the parts of @huggingface/tokenizers' Tokenizer this file reads (its public fields) */
export interface LibraryTokenizer {
  model: {
    encode(tokens: string[]): string[];
    merges: [string, string][];
    tokens_to_ids: Map<string, number>;
    unk_token_id: number | undefined;
    fuse_unk: boolean;
  };
  added_tokens: { content: string }[];
  added_tokens_map: Map<string, { id: number }>;
}

export const SPACE = '▁';

/** why a tokenizer.json cannot take the segment path, or undefined when it can */
export function segmentIneligibility(json: Record<string, unknown>, config: Record<string, unknown>, tok: LibraryTokenizer): string | undefined {
  const model = json['model'] as Record<string, unknown> | undefined;
  if (model?.['type'] !== 'BPE') return 'not a BPE model';
  if ((model['dropout'] ?? null) !== null || model['ignore_merges'] === true) return 'BPE dropout or ignore_merges';
  if (model['continuing_subword_prefix'] || model['continuing_subword_suffix'] || model['end_of_word_suffix']) return 'subword affixes';
  if ((json['pre_tokenizer'] ?? null) !== null) return 'has a pre-tokenizer';
  const n = json['normalizer'] as { type?: string; normalizers?: Record<string, unknown>[] } | null;
  const [prepend, replace, ...rest] = n?.type === 'Sequence' ? (n.normalizers ?? []) : [];
  const pattern = replace?.['pattern'] as { String?: string } | undefined;
  if (rest.length > 0 || prepend?.['type'] !== 'Prepend' || prepend['prepend'] !== SPACE || replace?.['type'] !== 'Replace' || pattern?.String !== ' ' || replace['content'] !== SPACE) {
    return 'normalizer is not Prepend("▁") + Replace(" " → "▁")';
  }
  if (config['remove_space'] === true || config['do_lowercase_and_remove_accent'] === true) return 'remove_space or lowercasing in tokenizer_config.json';
  for (const [a, b] of tok.model.merges) if (b.includes(SPACE) || a.indexOf(SPACE, 1) >= 0) return `merge "${a} ${b}" can join across "▁"`;
  for (const t of tok.added_tokens) if (t.content.includes(' ') || t.content.includes(SPACE) || t.content === '') return `added token "${t.content}" holds a space`;
  const pp = json['post_processor'] as { type?: string; single?: Record<string, unknown>[] } | null;
  if (pp && (pp.type !== 'TemplateProcessing' || (pp.single ?? []).filter((i) => 'Sequence' in i).length !== 1)) return 'post-processor is not a one-sequence template';
  return undefined;
}

/** the special tokens a TemplateProcessing post-processor puts before and after the single sequence */
function templateSpecials(json: Record<string, unknown>, tok: LibraryTokenizer): { before: number[]; after: number[] } {
  const pp = json['post_processor'] as { single?: Record<string, { id: string }>[] } | null;
  const out = { before: [] as number[], after: [] as number[] };
  let seen = false;
  for (const item of pp?.single ?? []) {
    if ('Sequence' in item) seen = true;
    else if (item['SpecialToken']) out[seen ? 'after' : 'before'].push(idOf(tok, item['SpecialToken'].id));
  }
  return out;
}

function idOf(tok: LibraryTokenizer, t: string): number {
  const id = tok.added_tokens_map.get(t)?.id ?? tok.model.tokens_to_ids.get(t) ?? tok.model.unk_token_id;
  if (id === undefined) throw new Error(`tokenizer: token "${t}" has no id and the model has no unk token`);
  return id;
}

/** the segment path gave up on this text: the caller encodes it whole with the library */
export class NeedsWholeText extends Error {}

/** encodes normalized text segment by segment, each distinct segment once */
export class SegmentEncoder {
  readonly before: readonly number[];
  readonly after: readonly number[];
  readonly #tok: LibraryTokenizer;
  readonly #cache = new Map<string, readonly number[]>();
  readonly #added: readonly string[];
  /** the unknown token's id when runs of it fuse into one */
  readonly #fuseUnk: number | undefined;

  constructor(json: Record<string, unknown>, tok: LibraryTokenizer) {
    this.#tok = tok;
    const { before, after } = templateSpecials(json, tok);
    this.before = before;
    this.after = after;
    this.#added = tok.added_tokens.map((t) => t.content);
    this.#fuseUnk = tok.model.fuse_unk ? tok.model.unk_token_id : undefined;
  }

  /** the ids of the segment "▁" + `body` (`body` holds no "▁" nor space, added tokens none: checked at load); throws NeedsWholeText */
  segment(body: string): readonly number[] {
    let ids = this.#cache.get(body);
    if (ids) return ids;
    if (this.#added.some((c) => body.includes(c))) throw new NeedsWholeText(`segment "${SPACE}${body}" holds an added token`);
    const tok = this.#tok;
    const raw = tok.model.encode([SPACE + body]).map((t) => idOf(tok, t));
    const unk = this.#fuseUnk;
    ids = unk === undefined ? raw : raw.filter((id, i) => !(id === unk && raw[i - 1] === unk));
    this.#cache.set(body, ids);
    return ids;
  }

  /** append the ids of segment "▁" + `body` to `out`; `lastUnk` says whether the previous segment ended unknown, the result whether this one does */
  append(out: number[], body: string, lastUnk: boolean): boolean {
    const ids = this.segment(body);
    const unk = this.#fuseUnk;
    const skip = lastUnk && ids[0] === unk ? 1 : 0;
    for (let i = skip; i < ids.length; i++) out.push(ids[i] as number);
    return ids.length === 0 ? lastUnk : ids[ids.length - 1] === unk;
  }
}

/**
 * Splits raw text arriving in pieces into the segments of its normalized form ("▁" + the text with spaces as
 * "▁", cut before every "▁"), each given by its body: the segment without its leading "▁" (a "▁" already in
 * the text cuts as a space does). `push` returns the bodies completed so far; the last, still open one waits
 * for more text.
 */
export class SegmentSplitter {
  #open = '';
  #started = false;

  push(text: string): string[] {
    if (text.length === 0) return [];
    this.#started = true;
    const joined = this.#open + text;
    const parts = (joined.includes(SPACE) ? joined.replaceAll(SPACE, ' ') : joined).split(' ');
    this.#open = parts.pop() as string;
    return parts;
  }

  /** the last segment's body, once the text has ended */
  finish(): string[] {
    const last = this.#open;
    this.#open = '';
    const started = this.#started;
    this.#started = false;
    return started ? [last] : [];
  }
}
