// compressed-tensors QuantizationArgs: the fields, their defaults and the validator's rules.
// Source: compressed-tensors quantization/quant_args.py (0.12.x; `scale_dtype`/`zp_dtype` from 0.13).
//
// Every QuantArgs is completed exactly as compressed-tensors' validator completes it: the strategy is inferred
// from group_size, static args get observer "minmax", dynamic args get observer null ("local" keeps "minmax"),
// and the combinations compressed-tensors rejects are rejected here, with a typed error. Types:
//   int    2..8 bits, strategies tensor, channel, group, token (dynamic)
//   float  8 bits = fp8 e4m3fn: tensor, channel, group, block (weights), token (dynamic);
//          4 bits = fp4 e2m1: tensor_group (NVFP4: fp8 group scales under an fp32 global scale) or group with
//          group_size 32 (MXFP4: power-of-two e8m0 scales); symmetric only

import { ReasonedError, type QuantReason } from '../diag/failure.js';
import { ggufArgsProblem } from './gguf-scheme.js';
import type { GgufBlockTypeName } from './gguf-quantize.js';

export type QuantType = 'int' | 'float';
export type QuantStrategy = 'tensor' | 'channel' | 'group' | 'block' | 'token' | 'tensor_group';
export type ActOrder = 'static' | 'group';
export const OBSERVERS = ['minmax', 'mse', 'memoryless', 'memoryless_minmax', 'static_minmax', 'memoryless_mse'] as const;
export type ObserverName = (typeof OBSERVERS)[number];

/** which algorithm an observer name runs on weights (the memoryless/static variants coincide there) */
export function observerKind(name: ObserverName | null): 'minmax' | 'mse' {
  return name === 'mse' || name === 'memoryless_mse' ? 'mse' : 'minmax';
}
export type JsonScalar = string | number | boolean | null;

/** compressed-tensors QuantizationArgs, every default filled in */
export interface QuantArgs {
  readonly num_bits: number;
  readonly type: QuantType;
  readonly symmetric: boolean;
  /** columns per scale for strategies group and tensor_group; null otherwise */
  readonly group_size: number | null;
  readonly strategy: QuantStrategy;
  /** [rows, cols] of a weight block for strategy block; null otherwise */
  readonly block_structure: readonly number[] | null;
  /** true: scales are computed on the fly at inference; "local": only the group scales are (NVFP4) */
  readonly dynamic: boolean | 'local';
  /** static: GPTQ permutes columns while solving, storage unchanged; group: also stores weight_g_idx */
  readonly actorder: ActOrder | null;
  /** null exactly when dynamic is true (compressed-tensors drops the observer of dynamic args) */
  readonly observer: ObserverName | null;
  readonly observer_kwargs: Readonly<Record<string, JsonScalar>>;
  /** GGUF schemes only: the ggml block type whose stored qparams the weights take (quant/gguf-scheme.ts); absent otherwise */
  readonly gguf?: GgufBlockTypeName;
}

/** QuantArgs as a recipe may spell them: anything omitted takes compressed-tensors' default */
export interface QuantArgsInput {
  readonly num_bits?: number;
  readonly type?: string;
  readonly symmetric?: boolean;
  readonly group_size?: number | null;
  readonly strategy?: string | null;
  readonly block_structure?: readonly number[] | null;
  readonly dynamic?: boolean | string;
  readonly actorder?: string | boolean | null;
  readonly observer?: string | null;
  readonly observer_kwargs?: Readonly<Record<string, JsonScalar>>;
  readonly gguf?: string;
}

export class SchemeError extends ReasonedError<QuantReason> {}

const STRATEGIES: readonly QuantStrategy[] = ['tensor', 'channel', 'group', 'block', 'token', 'tensor_group'];
/** the strategies each element type is implemented for */
const STRATEGIES_OF: Readonly<Record<string, readonly QuantStrategy[]>> = {
  int: ['tensor', 'channel', 'group', 'token'],
  fp8: ['tensor', 'channel', 'group', 'block', 'token'],
  fp4: ['tensor_group', 'group'],
};
/** the MX group size (OCP Microscaling: 32 elements share one e8m0 scale) */
export const MX_GROUP_SIZE = 32;

export function invalidArgs(where: string, message: string): SchemeError {
  return new SchemeError('invalid-quant-args', `${where}: ${message}`);
}

function unsupported(where: string, message: string): SchemeError {
  return new SchemeError('unsupported-quant-args', `${where}: ${message}`);
}

/** the element type's name: int, fp8 (e4m3fn) or fp4 (e2m1) */
export function elementKind(args: Pick<QuantArgs, 'type' | 'num_bits'>): 'int' | 'fp8' | 'fp4' {
  if (args.type === 'int') return 'int';
  return args.num_bits === 8 ? 'fp8' : 'fp4';
}

/** fp4 with power-of-two (e8m0) group scales: MXFP4 */
export function isMx(args: Pick<QuantArgs, 'type' | 'num_bits' | 'strategy'>): boolean {
  return args.type === 'float' && args.num_bits === 4 && args.strategy === 'group';
}

function resolveActOrder(value: QuantArgsInput['actorder'], where: string): ActOrder | null {
  if (value === undefined || value === null || value === false) return null;
  if (value === true) return 'group';
  const v = value.toLowerCase();
  if (v === 'group' || v === 'dynamic') return 'group';
  if (v === 'static' || v === 'weight') return 'static';
  throw invalidArgs(where, `actorder "${value}" is not one of: static, weight, group, dynamic, true, false, null`);
}

function resolveStrategy(input: QuantArgsInput, where: string): QuantStrategy {
  const given = input.strategy?.toLowerCase();
  if (given !== undefined) {
    if (!STRATEGIES.includes(given as QuantStrategy)) throw unsupported(where, `strategy "${input.strategy}" is not supported; expected one of: ${STRATEGIES.join(', ')}`);
    return given as QuantStrategy;
  }
  const g = input.group_size;
  if (g === undefined || g === null) return 'tensor';
  if (g > 0) return 'group';
  if (g === -1) return 'channel';
  throw invalidArgs(where, `group_size ${g} is invalid; use group_size > 0 for strategy "group" and -1 for "channel"`);
}

function resolveType(input: QuantArgsInput, num_bits: number, where: string): QuantType {
  const type = (input.type ?? 'int').toLowerCase();
  if (type !== 'int' && type !== 'float') throw unsupported(where, `type "${input.type}" is not supported; expected "int" or "float"`);
  if (type === 'int' && (!Number.isInteger(num_bits) || num_bits < 2 || num_bits > 8)) {
    throw unsupported(where, `num_bits ${num_bits} is not supported for type "int"; expected an integer from 2 to 8`);
  }
  if (type === 'float' && num_bits !== 8 && num_bits !== 4) {
    throw unsupported(where, `num_bits ${num_bits} is not supported for type "float"; expected 8 (fp8 e4m3) or 4 (fp4 e2m1)`);
  }
  return type;
}

function resolveDynamic(value: QuantArgsInput['dynamic'], where: string): boolean | 'local' {
  if (value === undefined) return false;
  if (typeof value === 'boolean') return value;
  if (value.toLowerCase() === 'local') return 'local';
  throw unsupported(where, `dynamic "${value}" is not supported; expected true, false or "local"`);
}

function checkBlock(strategy: QuantStrategy, block: readonly number[] | null, where: string): void {
  if (block !== null && (block.length !== 2 || !block.every((v) => Number.isInteger(v) && v > 0))) {
    throw invalidArgs(where, `block_structure [${block.join(', ')}] is invalid; expected two positive integers [rows, cols]`);
  }
  if (strategy === 'block' && block === null) throw invalidArgs(where, 'strategy "block" requires block_structure [rows, cols]');
  if (strategy !== 'block' && block !== null) throw invalidArgs(where, `block_structure requires strategy "block", found "${strategy}"`);
}

/** the rules of compressed-tensors' validator, and which combinations quantforge implements */
function checkCombination(a: Omit<QuantArgs, 'observer' | 'observer_kwargs'>, where: string): void {
  const { strategy, group_size, dynamic, actorder } = a;
  const grouped = strategy === 'group' || strategy === 'tensor_group';
  if (grouped && (group_size === null || group_size <= 0)) throw invalidArgs(where, `strategy "${strategy}" requires a positive group_size, found ${group_size}`);
  if (group_size !== null && group_size > 0 && !grouped) throw invalidArgs(where, `group_size ${group_size} requires strategy "group", found "${strategy}"`);
  if (strategy === 'token' && !dynamic) throw invalidArgs(where, 'strategy "token" requires dynamic: true');
  if (actorder !== null && strategy !== 'group') throw invalidArgs(where, `actorder "${actorder}" requires strategy "group", found "${strategy}"`);
  if (dynamic && (strategy === 'channel' || strategy === 'block')) {
    throw invalidArgs(where, `dynamic quantization supports strategies token, tensor, tensor_group and group, found "${strategy}"`);
  }
  if (dynamic === 'local' && strategy !== 'tensor_group') throw invalidArgs(where, `dynamic "local" is only supported for strategy "tensor_group", found "${strategy}"`);
  const kind = elementKind(a);
  const allowed = STRATEGIES_OF[kind] ?? [];
  if (!allowed.includes(strategy)) throw unsupported(where, `strategy "${strategy}" is not supported for ${kind} values; expected one of: ${allowed.join(', ')}`);
  if (a.type === 'float' && !a.symmetric) throw unsupported(where, `asymmetric ${kind} quantization is not supported; expected symmetric: true`);
  if (isMx(a) && group_size !== MX_GROUP_SIZE) {
    throw unsupported(where, `fp4 with strategy "group" is MXFP4, whose e8m0 scales cover ${MX_GROUP_SIZE} values; found group_size ${group_size} (use strategy "tensor_group" for NVFP4)`);
  }
}

/**
 * The input-activation quantizations quantforge implements: dynamic per token (int or fp8), static per tensor
 * (fp8, the FP8 preset), dynamic per group (fp8 as FP8_BLOCK, fp4 as MXFP4) and NVFP4's tensor_group with
 * dynamic "local" group scales under a calibrated global scale.
 */
export function checkActivationArgs(a: QuantArgs, where: string): void {
  const kind = elementKind(a);
  const ok =
    (a.strategy === 'token' && a.dynamic === true && kind !== 'fp4') ||
    (kind === 'fp8' && a.strategy === 'tensor' && a.dynamic === false) ||
    (kind !== 'int' && a.strategy === 'group' && a.dynamic === true) ||
    (kind === 'fp4' && a.strategy === 'tensor_group' && a.dynamic === 'local');
  if (!ok) {
    const found = `${kind} strategy "${a.strategy}" with dynamic ${JSON.stringify(a.dynamic)}`;
    throw unsupported(where, `${found} is not supported for input activations; expected dynamic "token" (int or fp8), static "tensor" (fp8), dynamic "group" (fp8, fp4) or "tensor_group" with dynamic "local" (fp4)`);
  }
}

/** complete `input` as compressed-tensors' QuantizationArgs validator does; `where` names it in errors */
export function resolveQuantArgs(input: QuantArgsInput, where = 'quantization args'): QuantArgs {
  const num_bits = input.num_bits ?? 8;
  const type = resolveType(input, num_bits, where);
  const strategy = resolveStrategy(input, where);
  const block_structure = input.block_structure ? [...input.block_structure] : null;
  checkBlock(strategy, block_structure, where);
  const base = {
    num_bits,
    type,
    symmetric: input.symmetric ?? true,
    group_size: input.group_size ?? null,
    strategy,
    block_structure,
    dynamic: resolveDynamic(input.dynamic, where),
    actorder: resolveActOrder(input.actorder, where),
  };
  checkCombination(base, where);
  let observer: ObserverName | null = null;
  if (base.dynamic !== true) {
    const name = input.observer ?? 'minmax';
    if (!OBSERVERS.includes(name as ObserverName)) throw invalidArgs(where, `observer "${name}" is not one of: ${OBSERVERS.join(', ')}`);
    observer = name as ObserverName;
  }
  let gguf: GgufBlockTypeName | undefined;
  if (input.gguf !== undefined) {
    const problem = type === 'int' ? ggufArgsProblem(input) : `gguf blocks store integer codes; found type "${type}"`;
    if (problem !== undefined) throw invalidArgs(where, problem);
    gguf = input.gguf as GgufBlockTypeName;
  }
  return { ...base, observer, observer_kwargs: { ...(input.observer_kwargs ?? {}) }, ...(gguf === undefined ? {} : { gguf }) };
}

/**
 * The JSON object compressed-tensors writes for `args` (QuantizationArgs.model_dump(), pydantic field
 * order). MXFP4 args also carry `scale_dtype` and `zp_dtype` (compressed-tensors ≥ 0.14 recognises MX
 * scales by scale_dtype uint8); every other scheme is written as 0.12 writes it. compressed-tensors writes
 * config.json with sort_keys=True, so a byte-exact writer sorts keys.
 */
export function toCompressedTensorsArgs(args: QuantArgs): Record<string, unknown> {
  return {
    num_bits: args.num_bits,
    type: args.type,
    symmetric: args.symmetric,
    group_size: args.group_size,
    strategy: args.strategy,
    block_structure: args.block_structure === null ? null : [...args.block_structure],
    dynamic: args.dynamic,
    actorder: args.actorder,
    ...(isMx(args) ? { scale_dtype: 'torch.uint8', zp_dtype: null } : {}),
    observer: args.observer,
    observer_kwargs: { ...args.observer_kwargs },
  };
}
