/** Parsers for {@link ConfigField.parse}; each throws with what it expected. */

export function integer(opts: { min?: number; max?: number } = {}): (raw: string) => number {
  const min = opts.min ?? Number.MIN_SAFE_INTEGER;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  return (raw) => {
    const value = Number(raw);
    if (!/^-?[0-9]+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new Error(`expected an integer from ${min} to ${max}`);
    }
    return value;
  };
}

export function number(opts: { min?: number; max?: number } = {}): (raw: string) => number {
  const min = opts.min ?? -Number.MAX_VALUE;
  const max = opts.max ?? Number.MAX_VALUE;
  return (raw) => {
    const value = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(value) || value < min || value > max) {
      throw new Error(`expected a number from ${min} to ${max}`);
    }
    return value;
  };
}

export const port = integer({ min: 0, max: 65535 });

export function boolean(raw: string): boolean {
  const value = raw.toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['0', 'false', 'no', 'off'].includes(value)) return false;
  throw new Error('expected true/false, yes/no, on/off or 1/0');
}

export function text(raw: string): string {
  return raw;
}

export function oneOf<T extends string>(...values: T[]): (raw: string) => T {
  return (raw) => {
    if (!(values as string[]).includes(raw)) throw new Error(`expected one of ${values.join(', ')}`);
    return raw as T;
  };
}

/** Comma-separated list, items trimmed, empty items dropped. */
export function list(raw: string): string[] {
  return raw
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
}

/** `host:port` with a port from 1 to 65535 (IPv6 hosts in brackets). */
export function hostPort(raw: string): string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(raw);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) {
    throw new Error('expected host:port, e.g. 127.0.0.1:50051');
  }
  return raw;
}

/** Comma-separated `host:port` list. */
export function hostPortList(raw: string): string[] {
  const items = list(raw);
  if (items.length === 0) throw new Error('expected a comma-separated list of host:port');
  return items.map(hostPort);
}

/** A URL with one of the given protocols, e.g. `redis:`. */
export function url(...protocols: string[]): (raw: string) => string {
  return (raw) => {
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new Error(`expected a URL such as ${protocols[0]}//127.0.0.1:6379`);
    }
    if (protocols.length > 0 && !protocols.includes(parsed.protocol)) {
      throw new Error(`expected a URL with protocol ${protocols.join(' or ')}`);
    }
    return raw;
  };
}

/** Sizes like `512`, `64k`, `16MiB`, `2g`, in bytes. */
export function byteSize(raw: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b)?$/i.exec(raw);
  if (!match) throw new Error('expected a size such as 1048576, 512k, 64MiB or 2g');
  const scale = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[match[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(match[1]) * scale);
}
