/**
 * Reverse-mode differentiation over the graph builder, so one onnxruntime session computes a loss and its
 * gradients (AutoRound learns rounding offsets and min/max factors this way; onnxruntime-node has no
 * training API).
 *
 * - Tape: the Graph's own node list. Builder nodes are appended after their inputs exist, so the list is
 *   already topologically ordered; `gradients` walks it backwards once, from `loss` to `wrt`.
 * - Only nodes on a path from `wrt` to `loss` get backward nodes: a forward sweep marks the Values that
 *   depend on `wrt` through differentiable input slots (never through shape/axes/index/condition inputs, nor
 *   through non-float, comparison or Shape-like ops), and the backward sweep visits a node only when one of
 *   its outputs has received a gradient. A Value read by several consumers gets the Sum of their gradients.
 * - Rules: a table keyed by op type (`autodiff/rules-*.ts`) of vector-Jacobian products emitted as ordinary
 *   ONNX nodes into the same Graph. They reuse the forward Values (no forward recomputation): Exp multiplies
 *   by its output, Softmax uses its probabilities, MatMul its operands.
 * - Broadcasting: every gradient has exactly its forward Value's shape. Binary ops sum the incoming gradient
 *   over the axes an input was broadcast along (leading axes it lacks, and axes where it has size 1), decided
 *   from static shapes with symbolic dims (`shape-infer.ts`); where a dim cannot be decided statically the
 *   axes are computed at run time (Shape → Equal → NonZero → ReduceSum). A Linear's weight gradient folds
 *   all batch axes into one Gemm instead of materialising per-batch partial products.
 * - Round, Floor and Ceil use the straight-through estimator (the gradient passes unchanged), as AutoRound's
 *   `round_ste`. Clip passes the gradient where min ≤ x ≤ max and hands it to a Value bound where that bound
 *   clipped, so gradients reach the min/max factors through scale and zero point. ReduceMax/Min and
 *   elementwise Max/Min split the gradient evenly between tied inputs (as torch.amax / torch.maximum).
 * - Limits: Slice with unit steps, Gather along axis 0 (scatter-add; negative indices unsupported), Pad in
 *   constant mode with constant non-negative pads; ops without a rule throw `autodiff-unsupported-op` only
 *   when a gradient actually has to pass through them.
 */

import type { Graph, Value } from './graph.js';
import type { NodeDef } from './proto.js';
import { isFloat } from './shape-dims.js';
import { inferFacts } from './shape-infer.js';
import { AutodiffError, Backward, type VjpRule } from './autodiff/backward.js';
import { ELEMENTWISE_RULES } from './autodiff/rules-elementwise.js';
import { MATMUL_RULES } from './autodiff/rules-matmul.js';
import { REDUCE_RULES } from './autodiff/rules-reduce.js';
import { SHAPE_RULES } from './autodiff/rules-shape.js';

export { AutodiffError } from './autodiff/backward.js';

const RULES: Readonly<Record<string, VjpRule>> = { ...ELEMENTWISE_RULES, ...SHAPE_RULES, ...REDUCE_RULES, ...MATMUL_RULES };

/** ops whose outputs carry no gradient (piecewise constant, integer or shape-valued) */
const NON_DIFFERENTIABLE: ReadonlySet<string> = new Set([
  'Shape', 'Size', 'ConstantOfShape', 'Constant', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Not',
  'And', 'Or', 'Xor', 'Sign', 'NonZero', 'ArgMax', 'ArgMin', 'IsNaN', 'IsInf', 'Range', 'EyeLike', 'RandomNormal',
  'RandomUniform', 'RandomNormalLike', 'RandomUniformLike',
]);

/** op types with a vector-Jacobian rule */
export const DIFFERENTIABLE_OPS: readonly string[] = Object.keys(RULES).sort();

export interface GradientOptions {
  /** upstream gradient of `loss` (its shape); ones when absent */
  seed?: Value;
  /** Values treated as constants: no gradient flows into or through them */
  stop?: readonly Value[];
}

/**
 * Emit into `g` the nodes computing d(sum of `loss` · seed)/d`w` for every `w` in `wrt` and return those
 * Values (in `wrt` order, dtype and shape of each `w`; zeros where `loss` does not depend on `w`). The caller
 * marks them as outputs.
 */
export function gradients(g: Graph, loss: Value, wrt: readonly Value[], options: GradientOptions = {}): Value[] {
  const facts = inferFacts(g);
  for (const v of [loss, ...wrt]) {
    if (!facts.has(v.name)) {
      throw new AutodiffError(
        'autodiff-bad-argument',
        `gradients: "${v.name}" is not a Value of graph "${g.name}"; expected a graph input, initializer or node output`,
      );
    }
  }
  const nodes = [...g.nodes];
  const b = new Backward(g, facts);
  const stopped = new Set((options.stop ?? []).map((v) => v.name));
  const ruleOf = (n: NodeDef): VjpRule | undefined => (n.domain === '' ? RULES[n.opType] : undefined);
  const blocked = (n: NodeDef): boolean => n.domain === '' && NON_DIFFERENTIABLE.has(n.opType);
  const slots = (n: NodeDef): readonly number[] => ruleOf(n)?.diff ?? n.inputs.map((_, i) => i);
  const live = (name: string): boolean => {
    const dtype = facts.get(name)?.dtype;
    return name !== '' && !stopped.has(name) && (dtype === undefined || isFloat(dtype));
  };

  // forward sweep: which Values depend differentiably on wrt
  const depends = new Set(wrt.map((v) => v.name).filter(live));
  for (const n of nodes) {
    if (blocked(n) || !slots(n).some((i) => depends.has(n.inputs[i] ?? ''))) continue;
    for (const o of n.outputs) if (live(o)) depends.add(o);
  }

  const parts = new Map<string, Value[]>();
  const totals = new Map<string, Value | undefined>();
  const total = (name: string): Value | undefined => {
    if (!totals.has(name)) {
      const list = parts.get(name);
      totals.set(name, !list ? undefined : list.length === 1 ? list[0] : b.sum(list));
    }
    return totals.get(name);
  };

  if (depends.has(loss.name)) {
    const dtype = b.value(loss.name).dtype;
    const scalar = facts.get(loss.name)?.shape?.length === 0;
    parts.set(loss.name, [options.seed ?? (scalar ? b.scalar(1, dtype) : b.filledLike(b.value(loss.name), 1))]);
    for (let k = nodes.length - 1; k >= 0; k--) {
      const node = nodes[k]!;
      if (blocked(node)) continue;
      const gy = node.outputs.map((o) => (depends.has(o) ? total(o) : undefined));
      if (gy.every((v) => v === undefined)) continue;
      const diff = slots(node);
      const needs = node.inputs.map((name, i) => diff.includes(i) && depends.has(name));
      if (!needs.some(Boolean)) continue;
      const rule = ruleOf(node);
      if (!rule) {
        const op = node.domain === '' ? node.opType : `${node.domain}::${node.opType}`;
        throw new AutodiffError(
          'autodiff-unsupported-op',
          `gradients: no vector-Jacobian rule for op "${op}" (node "${node.name}") on the path to the loss; ` +
            `supported: ${DIFFERENTIABLE_OPS.join(', ')}`,
        );
      }
      const x = node.inputs.map((name) => (name === '' ? undefined : b.value(name)));
      const y = node.outputs.map((name) => b.value(name));
      const gx = rule.vjp(b, { node, x, y, gy, needs });
      node.inputs.forEach((name, i) => {
        const v = gx[i];
        if (needs[i] && v) parts.set(name, [...(parts.get(name) ?? []), v]);
      });
    }
  }
  return wrt.map((w) => total(w.name) ?? b.filledLike(b.value(w.name), 0));
}
