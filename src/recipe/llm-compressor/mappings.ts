// Smoothing mappings in quantforge's form `{smooth_layer, balance_layers}`. llm-compressor writes them two
// ways, one per modifier (its pydantic models accept nothing else):
//
//   SmoothQuantModifier  a list per mapping whose leaves, flattened, are the balance layers then the smooth
//                        layer: [["re:.*q_proj", "re:.*k_proj", "re:.*v_proj"], "re:.*input_layernorm"]
//   AWQModifier          {smooth_layer, balance_layers, activation_hook_target} objects (AWQMapping)
//
// quantforge's own object form is also accepted for SmoothQuantModifier.

import { isMap, isScalar, isSeq, type Node, type YAMLMap, type YAMLSeq } from 'yaml';
import type { ConvertContext } from './context.js';
import { deref, keyName, mapAt, put, seqAt } from './nodes.js';
import { listOf } from './quant-args.js';

export function convertMappings(ctx: ConvertContext, node: Node | undefined, modifier: 'SmoothQuantModifier' | 'AWQModifier'): YAMLSeq | undefined {
  if (isScalar(node) && node.value === null) return undefined;
  if (!isSeq(node)) {
    ctx.invalid(node, `mappings of ${modifier} must be a list`);
    return undefined;
  }
  const out = seqAt(node.range);
  for (const item of node.items) {
    const mapping = deref(ctx.doc, item);
    const converted = isMap(mapping) ? objectMapping(ctx, mapping, modifier) : modifier === 'SmoothQuantModifier' ? listMapping(ctx, mapping) : undefined;
    if (!isMap(mapping) && modifier === 'AWQModifier') {
      ctx.invalid(mapping, 'an AWQModifier mapping is a map {smooth_layer: ..., balance_layers: [...]}; the [[balance layers], smooth layer] lists are SmoothQuantModifier\'s form');
    }
    if (converted) out.items.push(converted);
  }
  return out;
}

/** [[balance...], smooth]: every leaf but the last is a balance layer (llm-compressor flattens the list) */
function listMapping(ctx: ConvertContext, node: Node | undefined): YAMLMap | undefined {
  const leaves: Node[] = [];
  const flatten = (n: Node | undefined): boolean => {
    if (isSeq(n)) return n.items.every((item) => flatten(deref(ctx.doc, item)));
    if (isScalar(n) && typeof n.value === 'string') {
      leaves.push(n);
      return true;
    }
    return false;
  };
  if (!isSeq(node) || !flatten(node) || leaves.length < 2) {
    ctx.invalid(node, 'a SmoothQuantModifier mapping is a list [[balance layers...], smooth layer] of names or re: patterns');
    return undefined;
  }
  const smooth = leaves[leaves.length - 1]!;
  const balance = leaves.slice(0, -1);
  const first = node.items[0] as Node;
  const map = mapAt(node.range);
  put(map, 'smooth_layer', smooth.range, smooth.clone() as Node);
  put(map, 'balance_layers', first.range, seqAt(isSeq(first) ? first.range : balance[0]!.range, balance.map((b) => b.clone() as Node)));
  return map;
}

function objectMapping(ctx: ConvertContext, node: YAMLMap, modifier: string): YAMLMap | undefined {
  const map = mapAt(node.range);
  for (const pair of node.items) {
    const key = keyName(pair) ?? '';
    const value = deref(ctx.doc, pair.value);
    const keyRange = (pair.key as Node).range;
    if (key === 'smooth_layer') put(map, key, keyRange, (value ?? pair.key as Node).clone() as Node);
    else if (key === 'balance_layers') {
      const list = listOf(ctx, value, 'balance_layers');
      if (list) put(map, key, keyRange, list);
    } else if (key === 'activation_hook_target') {
      if (!(isScalar(value) && value.value === null)) ctx.unsupported(pair.key as Node, 'activation_hook_target (quantforge captures the balance layers\' common input)');
    } else {
      ctx.unsupported(pair.key as Node, `"${key}" in a mapping of ${modifier}; supported: smooth_layer, balance_layers`);
    }
  }
  return map;
}
