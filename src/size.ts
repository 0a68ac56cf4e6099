const UNITS: Record<string, number> = {
  '': 1, b: 1,
  kb: 1e3, mb: 1e6, gb: 1e9,
  kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
};

/** Parses a byte size ("65536", "512KiB", "64MiB", "1GB"; units case-insensitive) into bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const factor = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || factor === undefined) throw new Error(`invalid size "${text}" (use e.g. 65536, 512KiB, 64MiB, 1GiB)`);
  return Math.round(Number(m[1]) * factor);
}
