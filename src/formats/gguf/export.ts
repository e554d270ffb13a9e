// A whole Llama model as one GGUF file that llama.cpp loads: llama.* and tokenizer metadata, tensors renamed
// and q/k rows permuted as llama.cpp's converter does, Linear weights of the decoder layers encoded in one
// ggml type by ggml's reference quantizers (round to nearest; or by the blocks a method chose, via
// `encode`), everything else as the model stores it. Weights are read, encoded and written one tensor at a
// time. The caller hands in a reader (quantforge's WeightSource fits), so this moves into a step as is.
//
// Which type each tensor gets:
//   - 1-D tensors (norms, biases): F32, as the converter writes every 1-D tensor.
//   - token embedding, and the output projection unless `quantizeOutput`: the stored dtype (F32, F16, BF16).
//   - decoder Linear weights (and lm_head with `quantizeOutput`): `type`, unless their row length is not a whole
//     number of its blocks; then llama.cpp's fallback (llama-quant.cpp tensor_type_fallback): Q4_K → Q5_0,
//     Q6_K → Q8_0, and F16 when even that does not fit (e.g. in_features 172), each listed in `fallbacks`.
//   - a tied model whose output is quantized gets a separate output.weight; its embedding stays exact.
// Encoding: ggml's reference quantizers (what llama-quantize does without an imatrix), ggml's importance-
// weighted ones when `importance` gives a weight's imatrix, or the bytes a method chose (`encode`).

import { basename } from 'node:path';
import { encodeTensor } from '../../quant/gguf-quantize.js';
import { GGML_TYPES, rowFits, type GgmlTypeInfo, type GgmlTypeName } from '../../quant/gguf-types.js';
import { llama3RopeFactors, llamaMetadata, llamaTensorName, permuteRows, permutedHeads, type LlamaHParams } from './llama.js';
import { tokenizerMetadata } from './tokenizer.js';
import { bool, u32 } from './values.js';
import { GgufWriter } from './writer.js';
import { ReasonedError } from '../../diag/failure.js';

export interface GgufWeightReader {
  /** the HF model directory: tokenizer.json, tokenizer_config.json, config.json */
  readonly dir: string;
  readonly config: LlamaHParams;
  /** the tensor names of decoder layer `layer` (quantforge's ArchAdapter fits) */
  readonly arch: { layerTensors(config: LlamaHParams, layer: number): readonly string[] };
  /** a tensor by HF name, float32 */
  tensor(name: string): Promise<{ readonly dims: readonly number[]; readonly data: Float32Array }>;
}

export interface GgufExportOptions {
  /** the ggml type of the decoder layers' Linear weights */
  readonly type: GgmlTypeName;
  /** quantize the output projection (lm_head) too; default false, as llm-compressor's `ignore: [lm_head]` */
  readonly quantizeOutput?: boolean;
  /** HF weight names (`model.layers.0.mlp.down_proj.weight`) to keep in their stored dtype */
  readonly ignore?: readonly string[];
  /** the stored dtype of a tensor (`float32`, `float16`, `bfloat16`); default float32 */
  readonly storedDtype?: (hfName: string) => Promise<string> | string;
  /**
   * the type of each targeted weight, chosen by the method that quantized it (no fallback applied: the method
   * already stored a type that fits); undefined: the weight is not quantized and keeps its stored dtype.
   * Absent: every targeted weight takes `type` (with llama.cpp's fallbacks).
   */
  readonly typeOf?: (hfName: string) => GgmlTypeName | undefined;
  /** the bytes of a weight in `type` chosen by a method (HF row order); undefined: ggml's quantizer */
  readonly encode?: (hfName: string, w: Float32Array, rows: number, cols: number, type: GgmlTypeInfo) => Uint8Array | undefined;
  /** one importance per input column of a weight (llama.cpp's imatrix: mean squared activation), for ggml's _impl quantizers */
  readonly importance?: (hfName: string) => Float32Array | undefined;
  /** general.name; default the directory's name */
  readonly name?: string;
}

export interface GgufExportTensor {
  readonly name: string;
  /** the HF tensor it came from */
  readonly source: string;
  readonly type: GgmlTypeName;
  readonly shape: readonly number[];
  readonly bytes: number;
}

export interface GgufExportResult {
  readonly path: string;
  /** the file's size */
  readonly bytes: number;
  readonly tensors: readonly GgufExportTensor[];
  /** targeted weights stored in another type than asked, and why */
  readonly fallbacks: readonly { readonly name: string; readonly wanted: GgmlTypeName; readonly used: GgmlTypeName; readonly reason: string }[];
  /** where llama.cpp's tokenizer will differ from the model's tokenizer.json */
  readonly warnings: readonly string[];
}

export class GgufExportError extends ReasonedError<'gguf-export-unsupported'> {
  constructor(message: string) {
    super('gguf-export-unsupported', message);
  }
}

/** general.file_type (llama_ftype) for a model whose Linear weights are `type` */
const FILE_TYPE: Readonly<Record<GgmlTypeName, number>> = { F32: 0, F16: 1, BF16: 32, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q4_K: 14, Q6_K: 18 };
const FALLBACK: Partial<Record<GgmlTypeName, GgmlTypeName>> = { Q4_K: 'Q5_0', Q6_K: 'Q8_0' };
const STORED: Readonly<Record<string, GgmlTypeName>> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

interface Plan {
  readonly source: string;
  readonly shape: readonly number[];
  readonly type: GgmlTypeInfo;
  readonly heads: number | undefined;
  readonly quantized: boolean;
}

/** the type a targeted weight with rows of `cols` gets for `wanted`, with the reason when it differs */
export function fallbackType(wanted: GgmlTypeName, cols: number): { used: GgmlTypeName; reason?: string } {
  if (rowFits(GGML_TYPES[wanted], cols)) return { used: wanted };
  const next = FALLBACK[wanted];
  if (next !== undefined && rowFits(GGML_TYPES[next], cols)) {
    return { used: next, reason: `${cols} columns are not a multiple of ${GGML_TYPES[wanted].blockSize}; llama.cpp's fallback for ${wanted} is ${next}` };
  }
  return { used: 'F16', reason: `${cols} columns are not a multiple of ${GGML_TYPES[next ?? wanted].blockSize}; no ${wanted} block fits, F16 as llama.cpp falls back` };
}

function shapeOf(cfg: LlamaHParams, hf: string): number[] {
  const [h, i, q, kv] = [cfg.hiddenSize, cfg.intermediateSize, cfg.numHeads * cfg.headDim, cfg.numKvHeads * cfg.headDim];
  const rules: [RegExp, number[]][] = [
    [/^model\.embed_tokens\.weight$|^lm_head\.weight$/, [cfg.vocabSize, h]],
    [/norm\.weight$/, [h]],
    [/q_proj\.weight$/, [q, h]],
    [/[kv]_proj\.weight$/, [kv, h]],
    [/q_proj\.bias$/, [q]],
    [/[kv]_proj\.bias$/, [kv]],
    [/o_proj\.weight$/, [h, q]],
    [/o_proj\.bias$/, [h]],
    [/(gate|up)_proj\.weight$/, [i, h]],
    [/down_proj\.weight$/, [h, i]],
  ];
  return rules.find(([re]) => re.test(hf))![1];
}

/** write `reader`'s model to `path` as GGUF */
export async function exportGguf(reader: GgufWeightReader, path: string, options: GgufExportOptions): Promise<GgufExportResult> {
  const cfg = reader.config;
  if (cfg.modelType !== 'llama' && cfg.modelType !== 'mistral') {
    throw new GgufExportError(`model_type "${cfg.modelType}" is not exported to GGUF yet; supported: llama, mistral (llama architecture)`);
  }
  if (cfg.ropeScaling !== null && cfg.ropeScaling.type !== 'llama3') {
    throw new GgufExportError(`rope_scaling type "${cfg.ropeScaling.type}" is not exported to GGUF yet; supported: llama3 (or none)`);
  }
  const tok = tokenizerMetadata(reader.dir, cfg.vocabSize);
  const ignore = new Set(options.ignore ?? []);
  const storedType = async (hf: string): Promise<GgmlTypeInfo> => {
    const dtype = (await options.storedDtype?.(hf)) ?? 'float32';
    return GGML_TYPES[STORED[dtype] ?? 'F32'];
  };
  const plans = new Map<string, Plan>();
  const fallbacks: GgufExportResult['fallbacks'][number][] = [];
  const add = async (hf: string, gguf: string, targeted: boolean): Promise<void> => {
    const shape = shapeOf(cfg, hf);
    let type = shape.length === 1 ? GGML_TYPES.F32 : await storedType(hf);
    if (targeted && shape.length === 2 && !ignore.has(hf) && options.typeOf !== undefined) {
      const chosen = options.typeOf(hf);
      if (chosen !== undefined) type = GGML_TYPES[chosen];
    } else if (targeted && shape.length === 2 && !ignore.has(hf)) {
      const { used, reason } = fallbackType(options.type, shape[1]!);
      if (reason !== undefined) fallbacks.push({ name: gguf, wanted: options.type, used, reason });
      type = GGML_TYPES[used];
    }
    plans.set(gguf, { source: hf, shape, type, heads: permutedHeads(hf, cfg), quantized: targeted && type.blockSize > 1 });
  };

  await add('model.embed_tokens.weight', 'token_embd.weight', false);
  for (let l = 0; l < cfg.numLayers; l++) {
    for (const hf of reader.arch.layerTensors(cfg, l)) {
      const gguf = llamaTensorName(hf);
      if (gguf === undefined) throw new GgufExportError(`tensor "${hf}" has no place in GGUF's llama architecture`);
      await add(hf, gguf, /\.weight$/.test(hf) && !/norm\.weight$/.test(hf));
    }
  }
  await add('model.norm.weight', 'output_norm.weight', false);
  const quantizeOutput = options.quantizeOutput === true;
  if (!cfg.tieWordEmbeddings || quantizeOutput) {
    await add(cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight', 'output.weight', quantizeOutput);
  }

  const writer = new GgufWriter();
  for (const [k, v] of llamaMetadata(cfg, options.name ?? basename(reader.dir))) writer.set(k, v);
  writer.set('general.file_type', u32(FILE_TYPE[options.type]));
  writer.set('general.quantization_version', u32(2));
  for (const [k, v] of tok.entries) writer.set(k, v);
  if (cfg.tieWordEmbeddings && quantizeOutput) writer.set('quantforge.output_tied_to_embedding', bool(true));
  const rope = llama3RopeFactors(cfg);
  if (rope !== undefined) writer.addTensor('rope_freqs.weight', [rope.length], GGML_TYPES.F32);
  for (const [gguf, p] of plans) writer.addTensor(gguf, p.shape, p.type);

  const bytes = await writer.write(path, async (info) => {
    if (info.name === 'rope_freqs.weight') return new Uint8Array(rope!.buffer);
    const p = plans.get(info.name)!;
    const t = await reader.tensor(p.source);
    const [rows, cols] = p.shape.length === 2 ? [p.shape[0]!, p.shape[1]!] : [1, p.shape[0]!];
    const chosen = p.quantized ? options.encode?.(p.source, t.data, rows, cols, p.type) : undefined;
    const encoded = chosen ?? encodeTensor(p.type, t.data, rows, cols, p.quantized ? options.importance?.(p.source) : undefined);
    // blocks run along rows, so moving whole encoded rows equals encoding the permuted rows
    return p.heads === undefined ? encoded : permuteRows(encoded, p.shape[0]!, p.heads);
  });
  const tensors = writer.tensors.map((t) => ({ name: t.name, source: plans.get(t.name)?.source ?? '', type: t.type.name, shape: t.shape, bytes: t.byteLength }));
  return { path, bytes, tensors, fallbacks, warnings: tok.warnings };
}
