// `quantforge import llm-compressor RECIPE`: write an llm-compressor recipe as a quantforge recipe (stages with
// `kind`, llm-compressor's parameter names), to -o FILE or stdout.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { stringOption, UsageError, type Command } from './command.js';

const FORMATS = ['llm-compressor'];

export const importCommand: Command = {
  name: 'import',
  summary: 'convert an llm-compressor recipe into a quantforge recipe',
  usage: 'quantforge import llm-compressor RECIPE [-o recipe.yaml] [--model DIR] [--dataset FILE] [--output-dir DIR]',
  help: [
    '  llm-compressor     the format of RECIPE (the only one): <name>_stage → <group>_modifiers → GPTQModifier ...',
    '  RECIPE             the llm-compressor recipe YAML file',
    '  -o, --output FILE  write the quantforge recipe to FILE (default: print it on stdout); paths in it are',
    '                     written relative to FILE (to the working directory on stdout)',
    '  --model DIR        the Hugging Face model directory (default: a placeholder `quantforge validate` reports)',
    '  --dataset FILE     the calibration text or JSONL file (default: a placeholder `quantforge validate` reports)',
    '  --output-dir DIR   the compressed-tensors checkpoint the recipe writes (default: out/<RECIPE name> beside FILE)',
    '',
    '  Modifiers: QuantizationModifier → rtn, GPTQModifier → gptq, AWQModifier → awq, SmoothQuantModifier →',
    '  smoothquant, AutoRoundModifier → autoround, with scheme, targets, ignore, config_groups, mappings and each',
    '  method\'s parameters. A modifier or parameter quantforge does not have is an error at its line (exit 2);',
    '  README "Importing llm-compressor recipes" has the full mapping. `quantforge validate|plan|run RECIPE',
    '  --model DIR --dataset FILE [--output-dir DIR]` builds an llm-compressor recipe without importing it.',
  ].join('\n'),
  options: {
    output: { type: 'string', short: 'o' },
    model: { type: 'string' },
    dataset: { type: 'string' },
    'output-dir': { type: 'string' },
  },
  allowPositionals: 2,
  async run({ values, positionals }, io) {
    const [format, recipe] = positionals;
    if (format === undefined || !FORMATS.includes(format)) {
      throw new UsageError(format === undefined ? 'give the format and the file: quantforge import llm-compressor RECIPE' : `cannot import "${format}": formats: ${FORMATS.join(', ')}`);
    }
    if (recipe === undefined) throw new UsageError('an llm-compressor RECIPE file is required');
    const out = stringOption(values, 'output');
    if (out !== undefined && resolve(out) === resolve(recipe)) throw new UsageError('-o names the llm-compressor recipe itself; write the quantforge recipe to another file');
    const { importLlmCompressor } = await import('../recipe/llm-compressor/import.js');
    const inputs = { model: stringOption(values, 'model'), dataset: stringOption(values, 'dataset'), outputDir: stringOption(values, 'output-dir') };
    const imported = importLlmCompressor(recipe, inputs, out);
    if (!imported.ok) return { code: 2, diagnostics: imported.error };
    const { text, stages, placeholders, warnings } = imported.value;
    if (out === undefined) {
      io.out(text.replace(/\n$/, ''));
      return { code: 0, diagnostics: warnings };
    }
    mkdirSync(dirname(resolve(out)), { recursive: true });
    writeFileSync(out, text);
    io.out(`wrote ${out}: ${stages.join(', ')}`);
    if (placeholders.length > 0) io.out(`replace the placeholders for ${placeholders.join(' and ')} (or import again with --model / --dataset); \`quantforge validate ${out}\` lists them`);
    return { code: 0, diagnostics: warnings };
  },
};
