import { gatewayFileDescriptors, splitFileDescriptorSet } from './proto-files';

describe('splitFileDescriptorSet', () => {
  it('returns each file as the bytes it was written with', () => {
    const a = Buffer.from([0x0a, 0x01, 0x61]); // name: "a"
    const b = Buffer.alloc(200, 7); // long enough for a two-byte length
    const set = Buffer.concat([Buffer.from([0x0a, a.length]), a, Buffer.from([0x0a, 0xc8, 0x01]), b]);
    const files = splitFileDescriptorSet(set);
    expect(files.map((f) => f.equals(a) || f.equals(b))).toEqual([true, true]);
    expect(files[1]).toHaveLength(200);
  });

  it('refuses a set that is not one', () => {
    expect(() => splitFileDescriptorSet(Buffer.from([0x12, 0x00]))).toThrow(/unexpected tag 18/);
    expect(() => splitFileDescriptorSet(Buffer.from([0x0a, 0x05, 0x00]))).toThrow(/runs past the end/);
  });
});

describe('gatewayFileDescriptors', () => {
  it('holds the files of the services the gateway answers and what they import', () => {
    // A FileDescriptorProto starts with its name (field 1).
    const names = gatewayFileDescriptors().map((f) => f.subarray(2, 2 + f[1]).toString());
    expect(names).toEqual(expect.arrayContaining(['maas/v1/gateway.proto', 'maas/v1/registry.proto', 'inference/grpc_predict_v2.proto', 'grpc/health/v1/health.proto', 'google/protobuf/timestamp.proto']));
  });
});
