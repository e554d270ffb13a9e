// Files of a model directory that carry no weights and no code (tokenizer, generation settings): every
// output directory gets copies of the ones the base model has, so it loads on its own.

import { copyFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const SIDE_FILES = ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model'];

export async function copySideFiles(modelDir: string, outDir: string): Promise<void> {
  for (const f of SIDE_FILES) if (existsSync(join(modelDir, f))) await copyFile(join(modelDir, f), join(outDir, f));
}
