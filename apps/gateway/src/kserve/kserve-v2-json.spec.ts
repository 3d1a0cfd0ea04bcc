import { encodeInferResponse, parseInferRequest, parseJson } from './kserve-v2-json';

const body = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('REST tensors of the Open Inference Protocol', () => {
  it('keeps integer literals past 2^53 exact, and leaves strings that look like numbers alone', () => {
    const parsed = parseJson('{"a":[9223372036854775807,-9223372036854775808,1.5e300,12],"s":"12345678901234567890","e":"\\"9999999999999999999"}', 'x') as Record<string, unknown>;
    expect((parsed.a as unknown[])[2]).toBe(1.5e300);
    expect((parsed.a as unknown[])[3]).toBe(12);
    expect(parsed.s).toBe('12345678901234567890');
    expect(parsed.e).toBe('"9999999999999999999');
    const int64 = parseInferRequest('m', '', Buffer.from('{"inputs":[{"name":"x","shape":[2],"datatype":"INT64","data":[9223372036854775807,-9223372036854775808]}]}'), undefined);
    const raw = Buffer.from(int64.request.rawInputContents[0]);
    expect([raw.readBigInt64LE(0), raw.readBigInt64LE(8)]).toEqual([2n ** 63n - 1n, -(2n ** 63n)]);
    const uint64 = parseInferRequest('m', '', Buffer.from('{"inputs":[{"name":"x","shape":[1],"datatype":"UINT64","data":[18446744073709551615]}]}'), undefined);
    expect(Buffer.from(uint64.request.rawInputContents[0]).readBigUInt64LE(0)).toBe(2n ** 64n - 1n);
  });

  it('packs JSON data of every datatype little-endian, nested or flat', () => {
    const cases: Array<[string, unknown[], string]> = [
      ['BOOL', [true, false], '0100'],
      ['INT8', [-1, 2], 'ff02'],
      ['UINT16', [[1], [258]], '01000201'],
      ['INT32', [-2], 'feffffff'],
      ['UINT64', [1], '0100000000000000'],
      ['FP32', [1.5], '0000c03f'],
      ['FP64', [-2], '00000000000000c0'],
      ['BYTES', ['é'], '02000000c3a9'],
    ];
    for (const [datatype, data, hex] of cases) {
      const shape = [data.flat().length];
      const { request } = parseInferRequest('m', '', body({ inputs: [{ name: 'x', shape, datatype, data }] }), undefined);
      expect([datatype, Buffer.from(request.rawInputContents[0]).toString('hex')]).toEqual([datatype, hex]);
    }
  });

  it('refuses elements that do not fit their datatype, naming the element', () => {
    const refuse = (datatype: string, data: unknown[], message: RegExp) =>
      expect(() => parseInferRequest('m', '', body({ inputs: [{ name: 'x', shape: [data.length], datatype, data }] }), undefined)).toThrow(message);
    refuse('INT8', [1, 128], /element 1 is 128: expected an integer in \[-128, 127\]/);
    refuse('UINT32', [-1], /element 0 is -1/);
    refuse('INT32', [1.5], /element 0 is 1.5/);
    refuse('BOOL', [1], /expected true or false/);
    refuse('BYTES', [3], /expected a string/);
    refuse('FP16', [1], /FP16 elements have no JSON form/);
    expect(() => parseInferRequest('m', '', body({ inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3] }] }), undefined)).toThrow(/holds 3 elements, expected 4/);
  });

  it('takes binary inputs in order and every byte of the binary part', () => {
    const header = body({ inputs: [{ name: 'a', shape: [1], datatype: 'INT32', parameters: { binary_data_size: 4 } }, { name: 'b', shape: [1], datatype: 'FP32', data: [1] }, { name: 'c', shape: [2], datatype: 'UINT8', parameters: { binary_data_size: 2 } }] });
    const parsed = parseInferRequest('m', '3', Buffer.concat([header, Buffer.from([7, 0, 0, 0, 8, 9])]), header.length);
    expect(parsed.request.rawInputContents.map((r) => Buffer.from(r).toString('hex'))).toEqual(['07000000', '0000803f', '0809']);
    expect(parsed.request.modelVersion).toBe('3');
    expect(parsed.request.inputs.map((i) => i.parameters)).toEqual([{}, {}, {}]);
    expect(() => parseInferRequest('m', '', Buffer.concat([header, Buffer.alloc(7)]), header.length)).toThrow(/1 bytes of binary data that no input/);
    expect(() => parseInferRequest('m', '', Buffer.concat([header, Buffer.alloc(5)]), header.length)).toThrow(/runs past the binary data/);
    expect(() => parseInferRequest('m', '', header, header.length + 1)).toThrow(/Inference-Header-Content-Length is/);
  });

  it('passes parameters it does not honour on, for the protocol check to refuse by name', () => {
    const { request } = parseInferRequest('m', '', body({ parameters: { priority: 2, binary_data_output: true }, inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1], parameters: { shm: 'r' } }], outputs: [{ name: 'y', parameters: { classification: 3, binary_data: false } }] }), undefined);
    expect(Object.keys(request.parameters)).toEqual(['priority']);
    expect(Object.keys(request.inputs[0].parameters)).toEqual(['shm']);
    expect(Object.keys(request.outputs[0].parameters)).toEqual(['classification']);
  });

  it('answers each output as JSON or binary as asked, and refuses what JSON cannot carry', () => {
    const int64 = Buffer.alloc(8);
    int64.writeBigInt64LE(-(2n ** 63n));
    const half = Buffer.from([0x00, 0x3c, 0x01, 0x00]); // 1.0 and the smallest subnormal
    const response = {
      modelName: 'm',
      modelVersion: '2',
      id: 'q',
      parameters: {},
      outputs: [
        { name: 'i', datatype: 'INT64', shape: [1n], parameters: {}, contents: undefined },
        { name: 'h', datatype: 'FP16', shape: [2n], parameters: {}, contents: undefined },
        { name: 's', datatype: 'BYTES', shape: [1n], parameters: {}, contents: undefined },
      ],
      rawOutputContents: [int64, half, Buffer.from([2, 0, 0, 0, 0x22, 0x5c])],
    };
    const json = encodeInferResponse(response, () => false);
    expect(json.binary).toEqual([]);
    expect(json.json).toContain('"data":[-9223372036854775808]');
    expect(JSON.parse(json.json).outputs.map((o: { data: unknown }) => o.data)).toEqual([[-9223372036854775808], [1, 2 ** -24], ['"\\']]);
    expect(JSON.parse(json.json).id).toBe('q');
    const mixed = encodeInferResponse(response, (name) => name === 'h');
    expect(mixed.binary).toEqual([half]);
    expect(JSON.parse(mixed.json).outputs[1]).toEqual({ name: 'h', datatype: 'FP16', shape: [2], parameters: { binary_data_size: 4 } });
    const nan = Buffer.alloc(4);
    nan.writeFloatLE(NaN);
    expect(() => encodeInferResponse({ ...response, outputs: [{ name: 'f', datatype: 'FP32', shape: [1n], parameters: {}, contents: undefined }], rawOutputContents: [nan] }, () => false)).toThrow(
      /holds NaN, which JSON cannot carry: ask for it as binary data/,
    );
  });
});
