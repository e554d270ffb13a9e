// Where a gguf output puts its file: <path>/model.gguf. Its own module so the output's declaration
// (output.ts) names the file without importing the writer step.

import { join } from 'node:path';

export const GGUF_FILE = 'model.gguf';

/** the GGUF file of an output directory, or the path itself when it names a .gguf file */
export const ggufFileOf = (path: string): string => (path.endsWith('.gguf') ? path : join(path, GGUF_FILE));
