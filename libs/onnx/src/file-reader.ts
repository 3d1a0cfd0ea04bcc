import { type FileHandle } from 'node:fs/promises';

/**
 * Random-access reads of a file with a small window buffer, for scanning
 * protobuf wire format without loading the file: skipped fields are never read.
 */
export class FileReader {
  private window = Buffer.alloc(0);
  private windowStart = 0;

  constructor(
    private readonly file: FileHandle,
    readonly size: number,
    private readonly windowBytes = 64 * 1024,
  ) {}

  /** Reads `length` bytes at `offset` (a copy of at most the window size is kept). */
  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || offset + length > this.size) {
      throw new RangeError(`read of ${length} bytes at ${offset} runs past the end of the ${this.size}-byte file`);
    }
    const windowEnd = this.windowStart + this.window.length;
    if (offset >= this.windowStart && offset + length <= windowEnd) {
      return this.window.subarray(offset - this.windowStart, offset - this.windowStart + length);
    }
    const want = Math.min(Math.max(length, this.windowBytes), this.size - offset);
    const buf = Buffer.allocUnsafe(want);
    let done = 0;
    while (done < want) {
      const { bytesRead } = await this.file.read(buf, done, want - done, offset + done);
      if (bytesRead === 0) throw new RangeError(`file ended at ${offset + done}, before its stated size ${this.size}`);
      done += bytesRead;
    }
    this.window = buf;
    this.windowStart = offset;
    return buf.subarray(0, length);
  }

  /** Reads a base-128 varint at `offset`; returns its value and the offset after it. */
  async varint(offset: number, limit: number): Promise<{ value: number; next: number }> {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (offset + i >= limit) throw new RangeError(`varint at ${offset} runs past its message end ${limit}`);
      const byte = (await this.read(offset + i, 1))[0];
      value += (byte & 0x7f) * scale;
      scale *= 128;
      if ((byte & 0x80) === 0) return { value, next: offset + i + 1 };
    }
    throw new RangeError(`varint at ${offset} is longer than 10 bytes`);
  }
}
