// The example model's tokenizer, built by quantforge itself: a Llama-2-style BPE tokenizer.json (byte
// fallback, `▁` for spaces, one `<s>` prepended) whose merges come from a few rounds of BPE training on a small
// built-in English word list. Deterministic: the same JSON every time.

const WORDS = `the a and to of in was he she it is that on for with as his her they at be had by this not but
from or have an one all were we when there can more if out so said what up its about into than them only
time little day big friend saw play happy went very wanted cat dog tree sun ball house girl boy mom dad
story once upon named lily tom sky water bird fish flower green red blue good new old long small run
jump look found made make come back home park school food tell think know because after before under
over around again then could would should every other some many people world year way work life hand
place part number great same another while where each found still between never last might through`.split(/\s+/);

const PUNCTUATION = ['.', ',', '!', '?', "'", '"', '-', ':', ';', '\n'];
export const EXAMPLE_VOCAB_SIZE = 512;

function bpe(vocabTarget: number, base: string[]): { pieces: string[]; merges: string[] } {
  // corpus: each word with a leading ▁, weighted by its rank (earlier words are more frequent)
  const words = WORDS.map((w, i) => ({ symbols: ['▁', ...w], count: WORDS.length - i }));
  const pieces: string[] = [];
  const merges: string[] = [];
  while (base.length + pieces.length < vocabTarget) {
    const pairs = new Map<string, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.symbols.length; i++) {
        const k = `${w.symbols[i]} ${w.symbols[i + 1]}`;
        pairs.set(k, (pairs.get(k) ?? 0) + w.count);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [k, c] of [...pairs].sort(([a], [b]) => (a < b ? -1 : 1))) if (c > bestCount) [best, bestCount] = [k, c];
    if (best === undefined) break;
    const [a, b] = best.split(' ') as [string, string];
    merges.push(best);
    pieces.push(a + b);
    for (const w of words) {
      const next: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (w.symbols[i] === a && w.symbols[i + 1] === b) {
          next.push(a + b);
          i++;
        } else next.push(w.symbols[i] as string);
      }
      w.symbols = next;
    }
  }
  return { pieces, merges };
}

function special(id: number, content: string): Record<string, unknown> {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** tokenizer.json and tokenizer_config.json of the example model */
export function exampleTokenizer(maxPositions: number): { tokenizer: object; config: object; vocabSize: number; wordIds: number[] } {
  const bytes = Array.from({ length: 256 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`);
  const letters = [...'abcdefghijklmnopqrstuvwxyz', ...'ABCDEFGHIJKLMNOPQRSTUVWXYZ', ...'0123456789'];
  const chars = ['▁', ...letters, ...PUNCTUATION.filter((p) => p !== '\n')];
  const head = ['<unk>', '<s>', '</s>', ...bytes, ...chars];
  const { pieces, merges } = bpe(EXAMPLE_VOCAB_SIZE, head);
  const vocab: Record<string, number> = {};
  [...head, ...pieces].forEach((p, i) => (vocab[p] = i));
  const vocabSize = head.length + pieces.length;
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  };
  const config = {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: null,
    clean_up_tokenization_spaces: false,
    legacy: true,
    model_max_length: maxPositions,
    tokenizer_class: 'LlamaTokenizer',
  };
  // pieces that are a whole word of the list (with its leading ▁): sampled text made of them re-encodes exactly
  const words = new Set(WORDS.map((w) => `▁${w}`));
  const wordIds = Object.entries(vocab).filter(([p]) => words.has(p)).map(([, id]) => id);
  return { tokenizer, config, vocabSize, wordIds };
}
