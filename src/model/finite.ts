// NaN and ±Inf stop a build where they appear, with the module and layer named, instead of flowing through
// every later step into a NaN perplexity or a checkpoint of garbage. Weights are checked once where they are
// read (the model readers in source.ts and compressed-tensors-source.ts) and where a step writes a layer
// state (steps/layer-state.ts); activations where a decoder layer is run over the calibration windows
// (steps/activations.ts). A scan is one pass over the values, small beside the reads and matmuls around it.

import { InputError, ReasonedError } from '../diag/failure.js';
import { shapeString, type Tensor } from '../tensor.js';

/** where a tensor sits in the model, for the message */
export interface TensorSite {
  /** full name in the checkpoint (`model.layers.1.self_attn.q_proj.weight`) or a local one with `layer` */
  readonly name: string;
  /** decoder layer, when the tensor belongs to one (taken from the name when omitted) */
  readonly layer?: number | null;
  /** the file or artifact directory the values came from */
  readonly file: string;
}

/** a weight holds NaN or ±Inf: named with its module and layer */
export class NonFiniteWeightError extends InputError<'non-finite-weight'> {
  readonly module: string;
  readonly layer: number | null;
  constructor(message: string, site: { file: string; field: string; module: string; layer: number | null }) {
    super('non-finite-weight', message, { file: site.file, field: site.field });
    this.module = site.module;
    this.layer = site.layer;
  }
}

/** an activation became NaN or ±Inf although the weights were finite (overflow), or arrived so */
export class NonFiniteActivationError extends ReasonedError<'non-finite-activation'> {
  readonly layer: number | null;
  /** the modules whose inputs (or output) it is */
  readonly modules: readonly string[];
  constructor(message: string, layer: number | null, modules: readonly string[]) {
    super('non-finite-activation', message);
    this.layer = layer;
    this.modules = modules;
  }
}

interface Scan {
  nan: number;
  inf: number;
  first: number;
}

/** NaN and ±Inf counts of `data`, and the first such index (−1 when all are finite) */
export function scanFinite(data: ArrayLike<number>): Scan {
  let nan = 0;
  let inf = 0;
  let first = -1;
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    // v - v is 0 for every finite v, NaN for NaN and ±Inf: one comparison on the common path
    if (v - v !== 0) {
      if (v !== v) nan++;
      else inf++;
      if (first < 0) first = i;
    }
  }
  return { nan, inf, first };
}

function isFloat(t: Tensor): boolean {
  return t.dtype === 'float32' || t.dtype === 'float64';
}

/** `[i, j, …]` of flat index `i` in `dims` */
function indexOf(flat: number, dims: readonly number[]): string {
  const out: number[] = [];
  for (let d = dims.length - 1; d >= 0; d--) {
    const n = dims[d] as number;
    out.unshift(n > 0 ? flat % n : 0);
    flat = n > 0 ? Math.floor(flat / n) : 0;
  }
  return `[${out.join(', ')}]`;
}

function counts(s: Scan): string {
  const parts = [];
  if (s.nan > 0) parts.push(`${s.nan} NaN`);
  if (s.inf > 0) parts.push(`${s.inf} ±Inf`);
  return parts.join(' and ');
}

const LAYER = /^model\.layers\.(\d+)\./;

/** throws NonFiniteWeightError when the float tensor `t` holds NaN or ±Inf */
export function checkFiniteWeight(t: Tensor, site: TensorSite): void {
  if (!isFloat(t)) return;
  const s = scanFinite(t.data as Float32Array | Float64Array);
  if (s.first < 0) return;
  const match = LAYER.exec(site.name);
  const layer = site.layer ?? (match ? Number(match[1]) : null);
  const module = site.name.replace(/\.(weight|bias)$/, '');
  const local = match ? module.slice(match[0].length) : module;
  const where = layer === null ? `module ${module}` : `layer ${layer}, module ${local}`;
  const value = (t.data as Float32Array)[s.first];
  throw new NonFiniteWeightError(
    `${site.file}: weight ${site.name} (${where}) has ${counts(s)} values; the first is ${value} at ${indexOf(s.first, t.dims)} of ${shapeString(t.dims)}; expected finite weights`,
    { file: site.file, field: site.name, module, layer },
  );
}

/**
 * throws NonFiniteActivationError when an activation tensor of decoder layer `layer` holds NaN or ±Inf;
 * `what` says what it is ("the output of the decoder layer", "the inputs of self_attn.q_proj, …"), `why`
 * what that implies
 */
export function checkFiniteActivation(t: Tensor, site: { layer: number | null; what: string; modules: readonly string[]; why: string }): void {
  if (!isFloat(t)) return;
  const s = scanFinite(t.data as Float32Array | Float64Array);
  if (s.first < 0) return;
  const value = (t.data as Float32Array)[s.first];
  throw new NonFiniteActivationError(
    `${site.layer === null ? 'decoder layer' : `layer ${site.layer}`}: ${site.what} has ${counts(s)} values, the first ${value} at ${indexOf(s.first, t.dims)} of ${shapeString(t.dims)}; ${site.why}`,
    site.layer,
    site.modules,
  );
}
