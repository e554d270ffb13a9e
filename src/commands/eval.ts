// `quantforge eval`: perplexity of a model directory on a text file under the DESIGN.md §6 protocol.

import { resolve } from 'node:path';
import { deviceOption } from './build-options.js';
import { intOption, stringOption, UsageError, type Command } from './command.js';
import { progressLine } from './progress-line.js';

export const evalCommand: Command = {
  name: 'eval',
  summary: 'perplexity of a model directory (HF, compressed-tensors, ONNX or GGUF; or a .gguf file) on a text file',
  usage: 'quantforge eval --model DIR --dataset FILE [--seq-len N] [--max-windows N] [--batch N] [--device D] [--json]',
  help: [
    '  --model DIR        HuggingFace, compressed-tensors or quantforge ONNX model directory',
    '  --dataset FILE     plain text (read whole) or JSONL (field --text-field, default "text")',
    '  --seq-len N        window length in tokens (default min(max_position_embeddings, 2048))',
    '  --max-windows N    score only the first N windows',
    '  --batch N          windows per onnxruntime call (default 2048 / seq-len)',
    '  --text-field NAME  JSONL field holding the text',
    '  --device D         auto | cpu | webgpu | cuda (default auto)',
    '  --json             print one JSON object instead of text',
  ].join('\n'),
  options: {
    model: { type: 'string' },
    dataset: { type: 'string' },
    'seq-len': { type: 'string' },
    'max-windows': { type: 'string' },
    batch: { type: 'string' },
    'text-field': { type: 'string' },
    device: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
  allowPositionals: 0,
  async run({ values }, io) {
    const { Runtime } = await import('../ort/session.js');
    const { openModel } = await import('../outputs/open.js');
    const { loadTokenizer } = await import('../model/tokenizer.js');
    const { cutWindows, datasetPieces } = await import('../model/windows.js');
    const modelDir = stringOption(values, 'model');
    const dataset = stringOption(values, 'dataset');
    if (!modelDir) throw new UsageError('--model DIR is required');
    if (!dataset) throw new UsageError('--dataset FILE is required');
    const device = deviceOption(values);
    if (device.notice) io.err(`note: ${device.notice}`);
    const rt = new Runtime({ device: device.device });
    const model = await openModel(rt, resolve(modelDir));
    try {
      const seqLen = intOption(values, 'seq-len', 2) ?? Math.min(model.config.maxPositions, 2048);
      if (seqLen > model.config.maxPositions) {
        throw new UsageError(`--seq-len ${seqLen} exceeds the model's max_position_embeddings ${model.config.maxPositions}`);
      }
      const maxWindows = intOption(values, 'max-windows');
      const pieces = datasetPieces(resolve(dataset), stringOption(values, 'text-field'));
      const { ids } = loadTokenizer(model.dir).encodePrefix(pieces, maxWindows === undefined ? Infinity : maxWindows * seqLen);
      const windows = cutWindows(ids, seqLen, maxWindows);
      if (windows.dims[0] === 0) throw new UsageError(`${dataset}: ${ids.length} tokens make no window of ${seqLen}`);
      const progress = values['json'] ? undefined : progressLine(io, 'eval');
      const batch = intOption(values, 'batch');
      const r = await model.perplexity(windows, { ...(batch ? { batch } : {}), ...(progress ? { onProgress: progress.update } : {}) });
      progress?.done();
      const tokPerS = r.tokens / r.seconds;
      if (values['json']) {
        io.out(JSON.stringify({ model: model.dir, format: model.format, dataset: resolve(dataset), perplexity: r.perplexity, nll: r.nll, tokens: r.tokens, seq_len: r.seqLen, windows: r.windows, seconds: r.seconds, tokens_per_second: tokPerS, device: rt.device }));
      } else {
        io.out(`perplexity ${r.perplexity.toFixed(4)}  (${r.windows} windows × ${r.seqLen} tokens, ${r.tokens} predicted, ${model.format})`);
        io.out(`${r.seconds.toFixed(1)} s, ${tokPerS.toFixed(0)} tokens/s on ${rt.device}`);
      }
      return { code: 0 };
    } finally {
      await model.close();
      await rt.close();
    }
  },
};
