// The calibration prefix on the shared models: encoding only as much of the file as the windows need gives
// the ids of encoding the whole file with the library and cutting (DESIGN.md §6).

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { datasetPieces } from '../../src/model/windows.js';
import { describeShared, sharedData, sharedModel } from './shared.js';

const { Tokenizer } = createRequire(import.meta.url)('@huggingface/tokenizers') as { Tokenizer: new (json: object, config: object) => { encode(t: string): { ids: number[] } } };

function library(model: string): { encode(t: string): { ids: number[] } } {
  const read = (f: string): object => JSON.parse(readFileSync(join(sharedModel(model), f), 'utf8')) as object;
  return new Tokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
}

describeShared('calibration prefix on the shared models', () => {
  test('wiki-llama-8m: 96 windows of 256 from wiki-calib.txt equal the whole file encoded and cut', () => {
    const file = sharedData('wiki-calib.txt');
    const whole = library('wiki-llama-8m').encode(readFileSync(file, 'utf8')).ids;
    const prefix = loadTokenizer(sharedModel('wiki-llama-8m')).encodePrefix(datasetPieces(file), 96 * 256);
    expect(prefix.ids.length).toBeGreaterThanOrEqual(96 * 256);
    expect(prefix.ids).toEqual(whole.slice(0, prefix.ids.length));
  }, 120_000);

  for (const model of ['stories260K', 'babyllama-char105']) {
    test(`${model}: the first 200 kB of tinystories-calib.txt encode as the library encodes them`, () => {
      const text = readFileSync(sharedData('tinystories-calib.txt'), 'utf8').slice(0, 200_000);
      const whole = library(model).encode(text).ids;
      const tok = loadTokenizer(sharedModel(model));
      expect(tok.encode(text)).toEqual(whole);
      const cut = tok.encodePrefix([text.slice(0, 70_001), text.slice(70_001)], 128 * 256 > whole.length ? 40_000 : 128 * 256);
      expect(cut.ids).toEqual(whole.slice(0, cut.ids.length));
    }, 120_000);
  }
});
