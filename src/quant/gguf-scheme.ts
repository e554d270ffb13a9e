// GGUF block formats as quantization schemes. A GGUF scheme is an ordinary integer QuantArgs (strategy
// group, group_size = the block's sub-block of one scale) plus `gguf`: the ggml block type whose stored
// qparams the method must use. The args then say what a compressed-tensors reader would see, and `gguf`
// says how the scales are really computed and rounded (float16 d, 6-bit sub-scales under float16 super-
// scales), so the codes a method picks pack into the block with no second rounding.
//
//   preset        num_bits  symmetric  group_size  block  stored per block
//   GGUF_Q8_0         8       true         32        32    d f16                      value q·d, q −128..127
//   GGUF_Q4_0         4       true         32        32    d f16                      value (q − 8)·d, q 0..15
//   GGUF_Q4_1         4       false        32        32    d, m f16                   value q·d + m
//   GGUF_Q5_0         5       true         32        32    d f16                      value (q − 16)·d
//   GGUF_Q4_K         4       false        32       256    d, dmin f16; 8 × 6-bit sc, mn  value d·sc·q − dmin·mn
//   GGUF_Q6_K         6       true         16       256    d f16; 16 × int8 sc        value d·sc·(q − 32)
//
// A row of a Linear (in_features) must be whole blocks; otherwise llama.cpp's own fallback applies
// (llama-quant.cpp tensor_type_fallback: Q4_K → Q5_0, Q6_K → Q8_0) and, where no block fits (e.g. 172
// columns), the weight is not quantized (the output stores it unquantized).

import { GGML_TYPES, rowFits, type GgmlTypeName } from './gguf-types.js';
import type { GgufBlockTypeName } from './gguf-quantize.js';

export const GGUF_TYPES = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q4_K', 'Q6_K'] as const satisfies readonly GgufBlockTypeName[];

/** the QuantArgs fields of a block type, as a preset writes them */
export interface GgufArgsInput {
  readonly num_bits: number;
  readonly type: 'int';
  readonly symmetric: boolean;
  readonly strategy: 'group';
  readonly group_size: number;
  readonly dynamic: false;
  readonly gguf: GgufBlockTypeName;
}

const args = (gguf: GgufBlockTypeName, num_bits: number, symmetric: boolean, group_size = 32): GgufArgsInput => ({
  num_bits,
  type: 'int',
  symmetric,
  strategy: 'group',
  group_size,
  dynamic: false,
  gguf,
});

export const GGUF_ARGS: Readonly<Record<GgufBlockTypeName, GgufArgsInput>> = {
  Q8_0: args('Q8_0', 8, true),
  Q4_0: args('Q4_0', 4, true),
  Q4_1: args('Q4_1', 4, false),
  Q5_0: args('Q5_0', 5, true),
  Q4_K: args('Q4_K', 4, false),
  Q6_K: args('Q6_K', 6, true, 16),
};

/** the `GGUF_<type>` presets (scheme.ts spreads them into PRESET_SCHEMES) */
export const GGUF_PRESETS = {
  GGUF_Q8_0: { weights: GGUF_ARGS.Q8_0 },
  GGUF_Q4_0: { weights: GGUF_ARGS.Q4_0 },
  GGUF_Q4_1: { weights: GGUF_ARGS.Q4_1 },
  GGUF_Q5_0: { weights: GGUF_ARGS.Q5_0 },
  GGUF_Q4_K: { weights: GGUF_ARGS.Q4_K },
  GGUF_Q6_K: { weights: GGUF_ARGS.Q6_K },
} as const;

/** the block type of GGUF args; undefined for compressed-tensors args */
export function ggufTypeOf(a: object | null | undefined): GgufBlockTypeName | undefined {
  const g = (a as { gguf?: unknown } | null | undefined)?.gguf;
  return typeof g === 'string' && (GGUF_TYPES as readonly string[]).includes(g) ? (g as GgufBlockTypeName) : undefined;
}

const FALLBACK: Partial<Record<GgmlTypeName, GgufBlockTypeName>> = { Q4_K: 'Q5_0', Q6_K: 'Q8_0' };

/**
 * the block type a weight with rows of `cols` values is stored in when `wanted` is asked for (llama.cpp's
 * fallback), or undefined when no block fits; `reason` says why it differs
 */
export function storedBlockType(wanted: GgufBlockTypeName, cols: number): { type: GgufBlockTypeName | undefined; reason?: string } {
  if (rowFits(GGML_TYPES[wanted], cols)) return { type: wanted };
  const next = FALLBACK[wanted];
  if (next !== undefined && rowFits(GGML_TYPES[next], cols)) {
    return { type: next, reason: `${cols} columns are not a multiple of ${GGML_TYPES[wanted].blockSize}; llama.cpp's fallback for ${wanted} is ${next}` };
  }
  const size = GGML_TYPES[next ?? wanted].blockSize;
  return { type: undefined, reason: `${cols} columns are not a multiple of ${size}; no ${wanted} block fits, so the weight is not quantized (llama.cpp falls back to F16)` };
}

/**
 * the block type an integer scheme is requantized to for the gguf output (quant/gguf-requantize.ts has the
 * table); undefined for float schemes and > 8 bits
 */
export function requantizeTarget(args: { readonly type: string; readonly num_bits: number; readonly symmetric: boolean }): 'Q4_0' | 'Q4_1' | 'Q8_0' | undefined {
  if (args.type !== 'int' || args.num_bits > 8) return undefined;
  if (args.num_bits <= 4) return args.symmetric ? 'Q4_0' : 'Q4_1';
  return 'Q8_0';
}

/** what is wrong with GGUF args (`gguf` names a block type the other fields must agree with); undefined when nothing is */
export function ggufArgsProblem(input: { readonly gguf?: string; readonly num_bits?: number; readonly symmetric?: boolean; readonly group_size?: number | null; readonly dynamic?: boolean | string; readonly actorder?: unknown }): string | undefined {
  const name = input.gguf ?? '';
  if (!(GGUF_TYPES as readonly string[]).includes(name)) return `gguf "${name}" is not a block type quantforge writes; expected one of: ${GGUF_TYPES.join(', ')}`;
  const type = name as GgufBlockTypeName;
  const want = GGUF_ARGS[type];
  const same = (input.num_bits ?? 8) === want.num_bits && (input.symmetric ?? true) === want.symmetric && input.group_size === want.group_size && (input.dynamic ?? false) === false;
  if (!same) {
    return `gguf ${type} stores ${want.num_bits}-bit ${want.symmetric ? 'symmetric' : 'asymmetric'} codes in groups of ${want.group_size}; found num_bits ${input.num_bits}, symmetric ${input.symmetric}, group_size ${input.group_size}`;
  }
  if (input.actorder !== undefined && input.actorder !== null && input.actorder !== false) return `gguf ${type} blocks are solved in column order; expected actorder null`;
  return undefined;
}
