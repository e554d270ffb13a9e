// llama.cpp as an independent client, through node-llama-cpp's prebuilt CPU binary: load a GGUF file, run
// greedy decoding, score windows (mean negative log-likelihood of each next token, the windows of DESIGN §6),
// tokenize text. One context thread: llama.cpp's spinning worker threads crawl on a shared 2-core machine.

import type { Llama, LlamaModel, Token } from 'node-llama-cpp';

let instance: Promise<Llama> | undefined;

export function llamaCpp(): Promise<Llama> {
  instance ??= import('node-llama-cpp').then(({ getLlama, LlamaLogLevel }) => getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error }));
  return instance;
}

export async function withLlamaModel<T>(path: string, body: (model: LlamaModel) => Promise<T>): Promise<T> {
  const model = await (await llamaCpp()).loadModel({ modelPath: path });
  try {
    return await body(model);
  } finally {
    await model.dispose();
  }
}

/** greedy continuation of `prompt` (ids, BOS included) by `n` tokens */
export async function llamaGreedy(model: LlamaModel, prompt: readonly number[], n: number): Promise<number[]> {
  const ctx = await model.createContext({ contextSize: 256, threads: 1 });
  try {
    const out: number[] = [];
    for await (const t of ctx.getSequence().evaluate(prompt as Token[], { temperature: 0 })) {
      out.push(t);
      if (out.length >= n) break;
    }
    return [...prompt, ...out];
  } finally {
    await ctx.dispose();
  }
}

/** mean NLL over the T − 1 predicted tokens of each window of `windows` (row-major [n, T]), each from position 0 */
export async function llamaMeanNll(model: LlamaModel, windows: Int32Array, T: number): Promise<number> {
  const ctx = await model.createContext({ contextSize: T, batchSize: T, threads: 1 });
  try {
    const seq = ctx.getSequence();
    let sum = 0;
    const n = windows.length / T;
    for (let w = 0; w < n; w++) {
      const ids = Array.from(windows.subarray(w * T, (w + 1) * T)) as Token[];
      await seq.clearHistory();
      const out = await seq.controlledEvaluate(ids.map((t, i) => (i < T - 1 ? [t, { generateNext: { probabilities: true } }] : t)));
      for (let i = 0; i < T - 1; i++) {
        const p = out[i]?.next.probabilities?.get(ids[i + 1]!);
        if (p === undefined) throw new Error(`llama.cpp gave no probability for token ${ids[i + 1]} at window ${w} position ${i}`);
        sum -= Math.log(p);
      }
    }
    return sum / (n * (T - 1));
  } finally {
    await ctx.dispose();
  }
}
