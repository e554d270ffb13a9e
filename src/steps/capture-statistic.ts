// The activation statistics the smoothing stages capture, and how their files name them: shared by the capture
// step, its shards (capture-shard.ts) and their reduce (capture-partials.ts).

import { ReasonedError, type MethodReason } from '../diag/failure.js';

export const STATS_FILE = 'stats.safetensors';
export const STATISTICS = ['absmax', 'absmean'] as const;
export type Statistic = (typeof STATISTICS)[number];

/** the tensor holding `statistic` of the input of `module` in stats.safetensors */
export const statName = (module: string, statistic: Statistic): string => `${module}.input_${statistic}`;

export class CaptureError extends ReasonedError<MethodReason> {}
