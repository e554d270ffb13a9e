// `quantforge generate`: greedy generation with a KV cache on HF, compressed-tensors and ONNX directories.

import { resolve } from 'node:path';
import { deviceOption } from './build-options.js';
import { intOption, stringOption, UsageError, type Command } from './command.js';

export const generateCommand: Command = {
  name: 'generate',
  summary: 'greedy generation from a prompt (HF, compressed-tensors, ONNX or GGUF directory, or a .gguf file)',
  usage: 'quantforge generate --model DIR --prompt TEXT [--max-new-tokens N] [--device D] [--json]',
  help: [
    '  --model DIR          HuggingFace, compressed-tensors or quantforge ONNX model directory',
    '  --prompt TEXT        the prompt (encoded with the model\'s tokenizer, BOS included)',
    '  --max-new-tokens N   tokens to generate (default 60); stops early at EOS',
    '  --device D           auto | cpu | webgpu | cuda (default auto)',
    '  --json               print {"ids": [...], "text": "...", "tokens_per_second": ...}',
  ].join('\n'),
  options: {
    model: { type: 'string' },
    prompt: { type: 'string' },
    'max-new-tokens': { type: 'string' },
    device: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
  allowPositionals: 0,
  async run({ values }, io) {
    const { openModel } = await import('../outputs/open.js');
    const { loadTokenizer } = await import('../model/tokenizer.js');
    const { Runtime } = await import('../ort/session.js');
    const dir = stringOption(values, 'model');
    const prompt = stringOption(values, 'prompt');
    if (!dir) throw new UsageError('--model DIR is required');
    if (prompt === undefined) throw new UsageError('--prompt TEXT is required');
    const maxNew = intOption(values, 'max-new-tokens', 0) ?? 60;
    const device = deviceOption(values);
    if (device.notice) io.err(`note: ${device.notice}`);
    const rt = new Runtime({ device: device.device });
    const model = await openModel(rt, resolve(dir));
    try {
      const tok = loadTokenizer(model.dir);
      const ids = tok.encode(prompt);
      const t0 = performance.now();
      const out = await model.generate(ids, maxNew);
      const seconds = (performance.now() - t0) / 1000;
      const text = tok.decode(out, true);
      const perSecond = (out.length - ids.length) / seconds;
      if (values['json']) io.out(JSON.stringify({ model: model.dir, format: model.format, ids: out, text, new_tokens: out.length - ids.length, tokens_per_second: perSecond, device: rt.device }));
      else {
        io.out(text);
        io.err(`${out.length - ids.length} tokens in ${seconds.toFixed(2)} s (${perSecond.toFixed(1)} tokens/s, ${model.format}, on ${rt.device})`);
      }
      return { code: 0 };
    } finally {
      await model.close();
      await rt.close();
    }
  },
};
