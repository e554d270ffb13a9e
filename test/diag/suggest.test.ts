import { describe, expect, test } from 'vitest';
import { editDistance, suggest } from '../../src/diag/suggest.js';

describe('editDistance', () => {
  test('counts insertions, deletions, substitutions and transpositions as one edit each', () => {
    expect(editDistance('groupsize', 'group_size')).toBe(1);
    expect(editDistance('gptq', 'gpq')).toBe(1);
    expect(editDistance('W4A17', 'W4A16')).toBe(1);
    expect(editDistance('strenght', 'strength')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('same', 'same')).toBe(0);
  });
});

describe('suggest', () => {
  const keys = ['group_size', 'smoothing_strength', 'scheme', 'seed', 'samples'];

  test('finds the close candidate for a typo', () => {
    expect(suggest('groupsize', keys)).toBe('group_size');
    expect(suggest('smoothing_strenght', keys)).toBe('smoothing_strength');
    expect(suggest('sed', keys)).toBe('seed');
  });

  test('ignores case differences', () => {
    expect(suggest('w4a16', ['W4A16', 'W8A8'])).toBe('W4A16');
  });

  test('suggests nothing when no candidate is plausibly meant', () => {
    expect(suggest('tokenizer', keys)).toBeUndefined();
    expect(suggest('x', ['lr'])).toBeUndefined();
  });
});
