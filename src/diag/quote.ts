// Quoting inside a message of ours: another library's error text, or a value read from a file the user
// handed us, each on one line and bounded, so a hostile or huge input cannot turn a message into a flood.

/** a library's error text, on one line and at most `max` characters, to quote inside a message of ours */
export function causeText(e: unknown, max = 200): string {
  const text = (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ').trim();
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** a JSON value for a message: compact, at most `max` characters, safe on values nested too deep to print */
export function describeValue(v: unknown, max = 60): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = Array.isArray(v) ? `an array of ${v.length} (nested)` : typeof v;
  }
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
