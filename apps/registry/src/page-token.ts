import { InvalidArgumentError } from '@maas/rpc';

/** What a page token remembers: the listing it belongs to and where the last page ended. */
export interface PageCursor {
  /** Which listing issued it, e.g. `models?tag=x` or `versions/mlp`. */
  scope: string;
  /** Last key of the previous page. */
  after: string;
}

/** An opaque page token for a cursor. */
export function encodePageToken(cursor: PageCursor): string {
  return Buffer.from(JSON.stringify(cursor)).toString('base64url');
}

/**
 * The cursor of a token this server issued for the same listing; '' starts at
 * the beginning. Anything else is INVALID_ARGUMENT.
 */
export function decodePageToken(token: string, scope: string): string {
  if (!token) return '';
  let cursor: unknown;
  try {
    cursor = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    cursor = undefined;
  }
  const valid =
    typeof cursor === 'object' && cursor !== null && typeof (cursor as PageCursor).scope === 'string' && typeof (cursor as PageCursor).after === 'string';
  if (!valid) throw new InvalidArgumentError('page_token is not one this server issued: pass the next_page_token of the previous page, or empty to start');
  if ((cursor as PageCursor).scope !== scope) {
    throw new InvalidArgumentError('page_token belongs to a different listing (other filter or model): repeat the same request parameters with it');
  }
  return (cursor as PageCursor).after;
}

/** Largest page a listing returns; bigger requests are served this many (the proto's contract). */
export const MAX_PAGE_SIZE = 1000;

/** Page size within [1, max]: 0 means the default, anything above the maximum is coerced to it (as AIP-158 asks). */
export function pageSizeOf(requested: number, fallback = 50, max = MAX_PAGE_SIZE): number {
  if (!Number.isInteger(requested) || requested < 0) throw new InvalidArgumentError(`page_size ${requested} is invalid: expected 0 (default ${fallback}) or a positive integer`);
  return requested === 0 ? fallback : Math.min(requested, max);
}
