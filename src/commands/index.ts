// The command table: the order here is the order `quantforge --help` lists them.

import type { Command } from './command.js';
import { cacheCommand } from './cache.js';
import { doctorCommand } from './doctor.js';
import { evalCommand } from './eval.js';
import { exampleCommand } from './example.js';
import { generateCommand } from './generate.js';
import { importCommand } from './import.js';
import { planCommand } from './plan.js';
import { runCommand, sweepCommand } from './run.js';
import { validateCommand } from './validate.js';
import { workerCommand } from './worker.js';

export const commands: readonly Command[] = [validateCommand, planCommand, runCommand, sweepCommand, evalCommand, generateCommand, exampleCommand, importCommand, workerCommand, cacheCommand, doctorCommand];
