import { status } from '@grpc/grpc-js';
import { MAX_PAGE_SIZE, pageSizeOf } from './page-token';

describe('pageSizeOf', () => {
  it('takes 0 as the default and coerces sizes above the maximum to it', () => {
    expect(pageSizeOf(0)).toBe(50);
    expect(pageSizeOf(7)).toBe(7);
    expect(pageSizeOf(MAX_PAGE_SIZE)).toBe(1000);
    expect(pageSizeOf(100_000)).toBe(1000);
  });

  it('refuses what is not a count', () => {
    expect(() => pageSizeOf(-1)).toThrow(expect.objectContaining({ code: status.INVALID_ARGUMENT }));
    expect(() => pageSizeOf(1.5)).toThrow(/page_size 1.5 is invalid/);
  });
});
