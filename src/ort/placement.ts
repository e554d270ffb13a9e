// Which execution provider ran each node of a session: read from onnxruntime's profile (a Chrome-trace JSON
// written when a session has enableProfiling), whose per-node events carry `provider`, `op_name` and the
// input/output types. Nodes a provider lacks run on the CPU provider (onnxruntime partitions the graph and
// inserts MemcpyFromHost/MemcpyToHost at the borders), so this is how quantforge lists fallbacks.

import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** one (op type, provider, input dtypes) combination of a profiled session */
export interface NodePlacement {
  op: string;
  /** 'cpu', 'webgpu', 'cuda' (onnxruntime's provider name without "ExecutionProvider") */
  provider: string;
  /** element types of the node's inputs, e.g. ['float', 'float'] or ['double'] */
  inputTypes: string[];
  /** how many nodes of the graph have this combination */
  nodes: number;
}

interface TraceEvent {
  cat?: string;
  name?: string;
  args?: { op_name?: string; provider?: string; node_index?: string; input_type_shape?: Record<string, unknown>[] };
}

const PROVIDER_NAMES: Record<string, string> = {
  CPUExecutionProvider: 'cpu',
  WebGpuExecutionProvider: 'webgpu',
  CUDAExecutionProvider: 'cuda',
};

/** the profile file onnxruntime wrote for `prefix` (it appends a timestamp), newest first */
export function profileFile(prefix: string): string | undefined {
  const dir = dirname(prefix);
  const stem = basename(prefix);
  const files = readdirSync(dir).filter((f) => f.startsWith(`${stem}_`) && f.endsWith('.json')).sort();
  return files.length > 0 ? join(dir, files[files.length - 1]!) : undefined;
}

/** the placements of every node that ran (each node counted once, however many runs the profile holds) */
export function readPlacements(file: string): NodePlacement[] {
  const events = JSON.parse(readFileSync(file, 'utf8')) as TraceEvent[];
  const seen = new Set<string>();
  const byKey = new Map<string, NodePlacement>();
  for (const e of events) {
    const a = e.args;
    if (e.cat !== 'Node' || !a?.op_name || !a.provider || !e.name?.endsWith('_kernel_time')) continue;
    // one event per node and run: count each node (name + index: inserted Memcpy nodes share a name) once
    const node = `${e.name}|${a.node_index ?? ''}`;
    if (seen.has(node)) continue;
    seen.add(node);
    const provider = PROVIDER_NAMES[a.provider] ?? a.provider;
    const inputTypes = (a.input_type_shape ?? []).map((t) => Object.keys(t)[0] ?? '?');
    const key = `${a.op_name}|${provider}|${inputTypes.join(',')}`;
    const hit = byKey.get(key);
    if (hit) hit.nodes++;
    else byKey.set(key, { op: a.op_name, provider, inputTypes, nodes: 1 });
  }
  return [...byKey.values()].sort((x, y) => (x.provider + x.op < y.provider + y.op ? -1 : 1));
}

/** "MatMul×3 Cast×2 (double)" for the nodes placed on `provider` */
export function describePlacements(placements: readonly NodePlacement[], provider: string): string {
  return placements
    .filter((p) => p.provider === provider)
    .map((p) => `${p.op}${p.nodes > 1 ? `×${p.nodes}` : ''}${p.inputTypes.some((t) => t !== 'float') ? ` (${[...new Set(p.inputTypes)].join(',')})` : ''}`)
    .join(' ');
}
