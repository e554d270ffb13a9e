// What KL(fp ‖ q) needs from the fp evaluation (graphs/head-graph.ts): per position Σ p log p and ē = Wᵀp,
// for the first windows of the evaluation set whose ē fits KL_REFERENCE_BYTES. The evaluate/fp step writes them
// in groups of windows (`kl-reference.<g>.safetensors`: `negent` [w, T-1], `ebar` [w, T-1, H]); a quantized
// evaluation reads them group by group, so neither holds more than one group in memory.

import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors } from '../formats/safetensors.js';
import type { KlReference, KlReferenceReader, KlReferenceWriter } from '../graphs/perplexity.js';
import { tensor, type Tensor } from '../tensor.js';

/** bytes of ē the fp evaluation keeps at most: KL covers the windows that fit (all of them on the shared models) */
export const KL_REFERENCE_BYTES = 768 * 2 ** 20;
/** bytes of ē per file */
const GROUP_BYTES = 64 * 2 ** 20;

export interface KlLayout {
  /** windows covered, from the first */
  windows: number;
  /** windows per file */
  group: number;
}

export function klLayout(n: number, T: number, H: number): KlLayout {
  const perWindow = (T - 1) * H * 4;
  return { windows: Math.min(n, Math.floor(KL_REFERENCE_BYTES / perWindow)), group: Math.max(1, Math.floor(GROUP_BYTES / perWindow)) };
}

const fileOf = (dir: string, g: number): string => join(dir, `kl-reference.${g}.safetensors`);

/** collects consecutive windows' references and writes each full group */
export function klWriter(dir: string, layout: KlLayout, T: number, H: number): KlReferenceWriter & { finish(): Promise<void> } {
  const per = T - 1;
  let g = 0;
  let filled = 0;
  let negent = new Float32Array(0);
  let ebar = new Float32Array(0);
  const size = (group: number): number => Math.min(layout.group, layout.windows - group * layout.group);
  const flush = async (): Promise<void> => {
    if (filled === 0) return;
    await writeSafetensors(fileOf(dir, g), { negent: tensor('float32', [filled, per], negent.subarray(0, filled * per)), ebar: tensor('float32', [filled, per, H], ebar.subarray(0, filled * per * H)) });
    g++;
    filled = 0;
  };
  return {
    windows: layout.windows,
    async write(start, ref) {
      const count = ref.negent.dims[0] as number;
      for (let w = 0; w < count && start + w < layout.windows; w++) {
        if (start + w !== g * layout.group + filled) throw new Error(`kl reference: window ${start + w} written out of order`);
        if (filled === 0) [negent, ebar] = [new Float32Array(size(g) * per), new Float32Array(size(g) * per * H)];
        negent.set(ref.negent.data.subarray(w * per, (w + 1) * per), filled * per);
        ebar.set(ref.ebar.data.subarray(w * per * H, (w + 1) * per * H), filled * per * H);
        if (++filled === size(g)) await flush();
      }
    },
    finish: flush,
  };
}

/** serves any consecutive windows from the group files, one group loaded at a time */
export function klReader(dir: string, layout: KlLayout, T: number, H: number): KlReferenceReader {
  const per = T - 1;
  let loaded: { g: number; negent: Tensor<'float32'>; ebar: Tensor<'float32'> } | undefined;
  const group = async (g: number): Promise<NonNullable<typeof loaded>> => {
    if (loaded?.g === g) return loaded;
    const f = await SafetensorsFile.open(fileOf(dir, g));
    try {
      loaded = { g, negent: await f.readAs('negent', 'float32'), ebar: await f.readAs('ebar', 'float32') };
    } finally {
      await f.close();
    }
    return loaded;
  };
  return {
    windows: layout.windows,
    async read(start, count): Promise<KlReference> {
      const negent = new Float32Array(count * per);
      const ebar = new Float32Array(count * per * H);
      for (let w = 0; w < count; w++) {
        const i = start + w;
        const gr = await group(Math.floor(i / layout.group));
        const r = i % layout.group;
        negent.set(gr.negent.data.subarray(r * per, (r + 1) * per), w * per);
        ebar.set(gr.ebar.data.subarray(r * per * H, (r + 1) * per * H), w * per * H);
      }
      return { negent: tensor('float32', [count, per], negent), ebar: tensor('float32', [count, per, H], ebar) };
    },
  };
}
