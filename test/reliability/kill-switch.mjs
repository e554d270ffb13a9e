// A preload for the CLI under test (NODE_OPTIONS=--import <this file>): it counts the main thread's calls of
// node:fs/promises functions whose path arguments match a pattern, and SIGKILLs its own process at the n-th,
// just before or just after the call. That lands a kill exactly inside a commit or an output swap, moments a
// few milliseconds long that a timer from outside rarely hits. Production code knows nothing of it.
//   QF_KILL_SWITCH='{"ops":["rename"],"path":"/cache/tmp/pending-","nth":3,"when":"before"}'
//   QF_FS_TRACE=<file>: append every intercepted call as a JSON line {op, paths} (to count them in a full run)

import { appendFileSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { isMainThread } from 'node:worker_threads';

const OPS = ['rename', 'copyFile', 'writeFile', 'appendFile', 'mkdir', 'rm', 'unlink', 'link', 'utimes'];
const spec = process.env.QF_KILL_SWITCH ? JSON.parse(process.env.QF_KILL_SWITCH) : undefined;
const trace = process.env.QF_FS_TRACE;

if (isMainThread && (spec || trace)) {
  const fsp = createRequire(import.meta.url)('node:fs/promises');
  const pattern = spec ? new RegExp(spec.path) : undefined;
  let seen = 0;
  const die = () => {
    process.kill(process.pid, 'SIGKILL');
    return new Promise(() => {});
  };
  for (const op of OPS) {
    const original = fsp[op];
    fsp[op] = async function (...args) {
      const paths = args.filter((a) => typeof a === 'string');
      if (trace) appendFileSync(trace, `${JSON.stringify({ op, paths })}\n`);
      const hit = spec !== undefined && spec.ops.includes(op) && paths.some((p) => pattern.test(p)) && ++seen === spec.nth;
      if (hit && spec.when === 'before') await die();
      const result = await original.apply(this, args);
      if (hit) await die();
      return result;
    };
  }
  syncBuiltinESMExports();
}
