// Runs the real planner + executor over fake steps in-process; returns the summary event and every event.

import { DirStore } from '../../src/cache/dir-store.js';
import type { RunEvent } from '../../src/exec/events.js';
import { prepare } from '../../src/exec/prepare.js';
import { build } from '../../src/exec/run.js';
import { InProcessRunner } from '../../src/exec/runner.js';
import { Runtime, type Provider } from '../../src/ort/session.js';
import type { StepImpl } from '../../src/steps/types.js';

export type Summary = Extract<RunEvent, { event: 'summary' }>;

/** `device` only enters the keys (fake steps compute nothing), as a run resolved to that provider would */
export async function fakeBuild(recipe: string, cacheDir: string, impls: Map<string, StepImpl>, sets: string[] = [], device: Provider = 'cpu'): Promise<{ summary: Summary; events: RunEvent[] }> {
  const prepared = await prepare(recipe, sets, cacheDir, device);
  if (!prepared.ok) throw new Error(prepared.diagnostics.map((d) => d.message).join('\n'));
  const events: RunEvent[] = [];
  let rt: Runtime | undefined;
  const runner = new InProcessRunner(impls, () => (rt ??= new Runtime({ device: 'cpu' })));
  await build(prepared.value, new DirStore(cacheDir), runner, (e) => events.push(e), new AbortController().signal);
  const summary = events.find((e): e is Summary => e.event === 'summary');
  if (!summary) throw new Error('no summary event');
  return { summary, events };
}

export function ranIds(events: readonly RunEvent[]): string[] {
  return events.filter((e) => e.event === 'step-done' && e.result === 'ran').map((e) => (e as { id: string }).id);
}
