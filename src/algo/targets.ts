// Which modules a stage quantizes: `targets` and `ignore` resolved against a model's module list.
// Source: compressed-tensors utils/match.py (is_match, match_named_modules, match_targets).
//
// A pattern is a class name (`Linear`, matched against the module's class and its base classes), an
// exact module name, or `re:<regex>` matched with Python's re.match: anchored at the start of the
// name, not at the end. Ignore patterns take the same forms. One deliberate difference from
// compressed-tensors: `lm_head` and modules marked `nameOnly` (MoE routers) are never selected by a class
// name, only by their name or a regex.

import type { QuantScheme } from '../quant/scheme.js';
import { ReasonedError } from '../diag/failure.js';

export interface ModuleRef {
  readonly name: string;
  readonly className: string;
  /** parent class names (torch's MRO) that class-name patterns also match */
  readonly baseClassNames?: readonly string[];
  /** selected as a target only by its name or a regex, never by a class name (MoE routers) */
  readonly nameOnly?: boolean;
}

export class TargetError extends ReasonedError<'invalid-target-regex'> {
  constructor(pattern: string, cause: string) {
    super('invalid-target-regex', `pattern "${pattern}" is not a valid regular expression (${cause}); expected "re:<regex>" in Python re syntax`);
  }
}

const regexCache = new Map<string, RegExp>();

/** a JS RegExp equivalent to Python's re.match(source, ...): anchored at the start only */
function compile(pattern: string): RegExp {
  const source = pattern.slice(3);
  let re = regexCache.get(source);
  if (!re) {
    const js = source
      .replace(/\(\?P</g, '(?<')
      .replace(/\(\?P=(\w+)\)/g, '\\k<$1>')
      .replace(/\\A/g, '^')
      .replace(/\\Z/g, '$');
    try {
      re = new RegExp(`^(?:${js})`);
    } catch (e) {
      throw new TargetError(pattern, e instanceof Error ? e.message : String(e));
    }
    regexCache.set(source, re);
  }
  return re;
}

export function isLmHead(name: string): boolean {
  return name === 'lm_head' || name.endsWith('.lm_head');
}

/** exact name or `re:` pattern against the module name */
export function matchesName(name: string, pattern: string): boolean {
  return pattern.startsWith('re:') ? compile(pattern).test(name) : pattern === name;
}

/** class-name pattern against the module's class and base classes (never a regex) */
export function matchesClass(module: ModuleRef, pattern: string): boolean {
  if (pattern.startsWith('re:')) return false;
  return module.className === pattern || (module.baseClassNames?.includes(pattern) ?? false);
}

/** whether `pattern` selects `module` as a target (the lm_head and router rule applied) */
function selects(module: ModuleRef, pattern: string): boolean {
  if (matchesName(module.name, pattern)) return true;
  return matchesClass(module, pattern) && !isLmHead(module.name) && module.nameOnly !== true;
}

function ignores(module: ModuleRef, pattern: string): boolean {
  return matchesName(module.name, pattern) || matchesClass(module, pattern);
}

export interface MatchResult<M extends ModuleRef> {
  /** selected modules, in the order of `modules` */
  readonly matched: M[];
  /** targets that selected no module (ignored ones count as selected, as in compressed-tensors) */
  readonly unmatchedTargets: string[];
  /** ignore patterns that match no module at all */
  readonly unmatchedIgnore: string[];
}

function unused(patterns: readonly string[], used: Set<string>): string[] {
  return [...new Set(patterns)].filter((p) => !used.has(p));
}

/** the modules selected by any of `targets` and by none of `ignore` */
export function matchModules<M extends ModuleRef>(modules: readonly M[], targets: readonly string[], ignore: readonly string[] = []): MatchResult<M> {
  const usedTargets = new Set<string>();
  const usedIgnore = new Set<string>();
  const matched: M[] = [];
  for (const m of modules) {
    for (const p of ignore) if (ignores(m, p)) usedIgnore.add(p);
    const target = targets.find((t) => selects(m, t));
    if (target === undefined) continue;
    usedTargets.add(target);
    if (!ignore.some((p) => ignores(m, p))) matched.push(m);
  }
  // a later target that matches an already-claimed module still counts as matching something
  for (const t of targets) if (!usedTargets.has(t) && modules.some((m) => selects(m, t))) usedTargets.add(t);
  return { matched, unmatchedTargets: unused(targets, usedTargets), unmatchedIgnore: unused(ignore, usedIgnore) };
}

export interface SchemeAssignment<M extends ModuleRef> {
  readonly module: M;
  readonly scheme: QuantScheme;
  /** the pattern that decided: exact names first, then regexes, then class names */
  readonly target: string;
}

export interface AssignResult<M extends ModuleRef> extends Omit<MatchResult<M>, 'matched'> {
  readonly assigned: SchemeAssignment<M>[];
}

/**
 * The scheme of every selected module. A module selected by several groups takes the scheme of its
 * most specific pattern, as compressed-tensors' match_targets orders them: exact names, then `re:`
 * patterns, then class names, each sorted; a pattern listed by two groups belongs to the later one.
 */
export function assignSchemes<M extends ModuleRef>(modules: readonly M[], schemes: readonly QuantScheme[], ignore: readonly string[] = []): AssignResult<M> {
  const byTarget = new Map<string, QuantScheme>();
  for (const s of schemes) for (const t of s.targets) byTarget.set(t, s);
  const targets = [...byTarget.keys()];
  const nameOrder = [...targets].sort((a, b) => Number(a.startsWith('re:')) - Number(b.startsWith('re:')) || (a < b ? -1 : a > b ? 1 : 0));
  const { matched, unmatchedTargets, unmatchedIgnore } = matchModules(modules, targets, ignore);
  const assigned = matched.map((module) => {
    const target = nameOrder.find((t) => matchesName(module.name, t)) ?? nameOrder.find((t) => selects(module, t));
    if (target === undefined) throw new Error(`internal: module "${module.name}" matched but no target selects it`);
    return { module, scheme: byTarget.get(target) as QuantScheme, target };
  });
  return { assigned, unmatchedTargets, unmatchedIgnore };
}
