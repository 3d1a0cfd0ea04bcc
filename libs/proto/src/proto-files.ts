import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Folder holding `maas/v1/*.proto`, for dynamic loading (reflection, tests). */
export const protoRoot = resolve(__dirname, '../../../proto');

/**
 * The descriptors of what the gateway serves (its services, the registry API
 * it proxies, the Open Inference Protocol, grpc.health.v1) and every file they
 * import, each a serialized `FileDescriptorProto` exactly as protoc built it
 * (`npm run gen` writes the set). Server reflection answers from these.
 */
export function gatewayFileDescriptors(): Buffer[] {
  return splitFileDescriptorSet(readFileSync(join(__dirname, 'gen', 'gateway-descriptors.binpb')));
}

/**
 * The files of a serialized `FileDescriptorSet` (`repeated FileDescriptorProto
 * file = 1`), each as the bytes it was written with: field 1, wire type 2, a
 * varint length, then the message.
 */
export function splitFileDescriptorSet(set: Buffer): Buffer[] {
  const files: Buffer[] = [];
  let offset = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      if (offset >= set.length || shift > 28) throw new Error('FileDescriptorSet: a varint is cut short or too long');
      const byte = set[offset++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  while (offset < set.length) {
    const tag = varint();
    if (tag !== ((1 << 3) | 2)) throw new Error(`FileDescriptorSet: unexpected tag ${tag} at byte ${offset}: expected field 1, length-delimited`);
    const length = varint();
    if (offset + length > set.length) throw new Error('FileDescriptorSet: a file runs past the end');
    files.push(set.subarray(offset, offset + length));
    offset += length;
  }
  return files;
}
