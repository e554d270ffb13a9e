// JSON.parse keeps the last of repeated keys silently ({"a": 1, "a": 2} is {"a": 2}); files whose keys name
// things (safetensors headers, a checkpoint index's weight_map) must refuse a repeated key instead. This scans
// text that JSON.parse already accepted and finds the first key repeated within one object.

export interface DuplicateKey {
  readonly key: string;
  /** nesting depth of the object holding it: 1 for the top-level object */
  readonly depth: number;
  /** the key whose value is that object (undefined at the top level) */
  readonly owner: string | undefined;
}

/** the first repeated key of `text`, which must be valid JSON */
export function firstDuplicateKey(text: string): DuplicateKey | undefined {
  const frames: ({ keys: Set<string>; owner: string | undefined } | null)[] = [];
  let lastKey: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b) frames.push({ keys: new Set(), owner: lastKey });
    else if (c === 0x5b) frames.push(null);
    else if (c === 0x7d || c === 0x5d) frames.pop();
    else if (c === 0x22) {
      let j = i + 1;
      let escaped = false;
      while (text.charCodeAt(j) !== 0x22) {
        if (text.charCodeAt(j) === 0x5c) {
          escaped = true;
          j += 2;
        } else j += 1;
      }
      let k = j + 1;
      while (k < text.length && isJsonSpace(text.charCodeAt(k))) k++;
      const frame = frames[frames.length - 1];
      if (text.charCodeAt(k) === 0x3a && frame) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (frame.keys.has(key)) return { key, depth: frames.length, owner: frame.owner };
        frame.keys.add(key);
        lastKey = key;
      }
      i = j;
    }
  }
  return undefined;
}

// JSON's whitespace: space, tab, line feed, carriage return
function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}
