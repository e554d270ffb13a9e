import { describe, expect, test } from 'vitest';
import { formatSize, parseSize } from '../../src/cache/parse-size.js';

describe('parseSize', () => {
  test.each([
    ['4096', 4096],
    ['0', 0],
    ['100k', 100 * 1024],
    ['512M', 512 * 1024 * 1024],
    ['20G', 20 * 1024 ** 3],
    ['20GB', 20 * 1024 ** 3],
    ['20GiB', 20 * 1024 ** 3],
    ['1.5T', 1.5 * 1024 ** 4],
    [' 2 g ', 2 * 1024 ** 3],
    ['.5K', 512],
  ])('reads %j as %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  test.each(['', 'G', '-1G', '20X', '1.2.3M', '20 GG', 'iB', 'ten'])('rejects %j and lists the units', (text) => {
    expect(() => parseSize(text)).toThrow(/invalid size .*one of B, K, M, G, T, P/);
  });
});

describe('formatSize', () => {
  test('writes bytes below 1 KiB exactly and larger sizes with one decimal', () => {
    expect([0, 812, 1536, 20 * 1024 ** 3].map(formatSize)).toEqual(['0 B', '812 B', '1.5 KiB', '20.0 GiB']);
  });

  test('round-trips through parseSize for whole units', () => {
    expect(parseSize(formatSize(3 * 1024 ** 2).replace(' ', ''))).toBe(3 * 1024 ** 2);
  });
});
