import { DataType, PredictRequest, PredictResponse, type Tensor } from './index';
import { decodePredictRequest, decodePredictResponse, encodePredictRequest, encodePredictRequestPieces, encodePredictResponse, encodePredictResponsePieces, predictResponseSize } from './predict-wire';

const joined = (message: Buffer | Buffer[]): Buffer => (Buffer.isBuffer(message) ? message : Buffer.concat(message));

function tensor(name: string, dtype: DataType, shape: number[], bytes: number, seed = 1): Tensor {
  const rawData = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) rawData[i] = (i * 31 + seed) & 0xff;
  return { name, dtype, shape, rawData, stringData: [] };
}

const requests: Array<[string, PredictRequest]> = [
  ['empty', { model: '', version: 0, alias: '', inputs: [], outputNames: [], sha256: '' }],
  ['one float tensor', { model: 'mlp', version: 3, alias: '', inputs: [tensor('input', DataType.DATA_TYPE_FLOAT32, [1, 4], 16)], outputNames: [], sha256: '' }],
  [
    'alias, several tensors, output names, unicode',
    {
      model: 'ocr-rec',
      version: 0,
      alias: 'production',
      inputs: [tensor('x', DataType.DATA_TYPE_FLOAT32, [2, 3, 48, 320], 2 * 3 * 48 * 320 * 4), tensor('größe', DataType.DATA_TYPE_INT64, [2], 16, 7), tensor('empty', DataType.DATA_TYPE_FLOAT32, [0, 4], 0)],
      outputNames: ['logits', 'naïve'],
      sha256: 'ab'.repeat(32),
    },
  ],
  ['string tensor', { model: 'm', version: 1_000_000, alias: '', inputs: [{ name: 's', dtype: DataType.DATA_TYPE_STRING, shape: [3], rawData: Buffer.alloc(0), stringData: ['a', '', 'ünï'] }], outputNames: [], sha256: '' }],
  ['large dims and version', { model: 'm', version: 2 ** 32 - 1, alias: '', inputs: [tensor('t', DataType.DATA_TYPE_UINT8, [300, 70_000, 2 ** 40], 5)], outputNames: [], sha256: '' }],
  ['negative dim (generated encoder path)', { model: 'm', version: 1, alias: '', inputs: [tensor('t', DataType.DATA_TYPE_FLOAT32, [-1, 4], 16)], outputNames: [], sha256: '' }],
];

describe('one-pass Predict codec', () => {
  it.each(requests)('encodes a PredictRequest to the generated encoder’s bytes and decodes them back (%s)', (_name, message) => {
    const expected = Buffer.from(PredictRequest.encode(message).finish());
    const bytes = encodePredictRequest(message);
    expect(bytes.equals(expected)).toBe(true);
    expect(decodePredictRequest(bytes)).toEqual(PredictRequest.decode(expected));
  });

  it.each(requests)('encodes a PredictResponse to the generated encoder’s bytes and decodes them back (%s)', (_name, request) => {
    const message: PredictResponse = { model: request.model, version: request.version, outputs: request.inputs };
    const expected = Buffer.from(PredictResponse.encode(message).finish());
    const bytes = encodePredictResponse(message);
    expect(bytes.equals(expected)).toBe(true);
    expect(predictResponseSize(message)).toBe(expected.length);
    expect(decodePredictResponse(bytes)).toEqual(PredictResponse.decode(expected));
  });

  it.each(requests)('writes a PredictResponse as pieces that join into the same bytes (%s)', (_name, request) => {
    const message: PredictResponse = { model: request.model, version: request.version, outputs: request.inputs };
    const expected = Buffer.from(PredictResponse.encode(message).finish());
    // By default only large tensors go by reference; from 1 byte up, every non-empty one does.
    for (const from of [undefined, 1]) expect(joined(encodePredictResponsePieces(message, from)).equals(expected)).toBe(true);
  });

  it.each(requests)('writes a PredictRequest as pieces that join into the same bytes (%s)', (_name, message) => {
    const expected = Buffer.from(PredictRequest.encode(message).finish());
    for (const from of [undefined, 1]) expect(joined(encodePredictRequestPieces(message, from)).equals(expected)).toBe(true);
  });

  it('takes a large input tensor into a request’s pieces by reference, and the fields after it into their own piece', () => {
    const big = tensor('x', DataType.DATA_TYPE_FLOAT32, [1, 3, 48, 320], 3 * 48 * 320 * 4);
    const pieces = encodePredictRequestPieces({ model: 'ocr', version: 0, alias: 'production', inputs: [big], outputNames: ['y'], sha256: 'ab'.repeat(32) }) as Buffer[];
    expect(pieces).toHaveLength(3);
    expect(pieces[1].buffer).toBe(big.rawData.buffer);
    expect([pieces[1].byteOffset, pieces[1].length]).toEqual([big.rawData.byteOffset, big.rawData.length]);
    expect(decodePredictRequest(joined(pieces))).toMatchObject({ alias: 'production', outputNames: ['y'], sha256: 'ab'.repeat(32) });
  });

  it('takes large output tensors into the pieces by reference and copies small ones', () => {
    const big = tensor('y', DataType.DATA_TYPE_FLOAT32, [1, 40, 6625], 40 * 6625 * 4);
    const small = tensor('n', DataType.DATA_TYPE_INT64, [1], 8);
    // Without a large tensor the message is one buffer, as encodePredictResponse writes it.
    expect(Buffer.isBuffer(encodePredictResponsePieces({ model: 'ocr', version: 2, outputs: [small, small] }))).toBe(true);
    expect(Buffer.isBuffer(encodePredictRequestPieces({ model: 'ocr', version: 2, alias: '', inputs: [small], outputNames: [], sha256: '' }))).toBe(true);
    const pieces = encodePredictResponsePieces({ model: 'ocr', version: 2, outputs: [small, big, small] }) as Buffer[];
    expect(pieces).toHaveLength(3);
    expect(pieces[1].buffer).toBe(big.rawData.buffer);
    expect([pieces[1].byteOffset, pieces[1].length]).toEqual([big.rawData.byteOffset, big.rawData.length]);
    expect(pieces[0].buffer).not.toBe(small.rawData.buffer);
    // The piece is the tensor's memory: what the tensor holds when the piece is written is what goes out.
    big.rawData[0] ^= 0xff;
    expect(pieces[1][0]).toBe(big.rawData[0]);
  });

  it('hands out tensor bytes as views of the received buffer, not copies', () => {
    const bytes = encodePredictResponse({ model: 'm', version: 1, outputs: [tensor('y', DataType.DATA_TYPE_FLOAT32, [1, 1024], 4096)] });
    const decoded = decodePredictResponse(bytes);
    expect(decoded.outputs[0].rawData.buffer).toBe(bytes.buffer);
    bytes[bytes.length - 1] ^= 0xff;
    expect(decoded.outputs[0].rawData[4095]).toBe(bytes[bytes.length - 1]);
  });

  it('skips fields it does not know and reads unpacked shapes, as the generated decoder does', () => {
    const base = encodePredictRequest({ model: 'm', version: 2, alias: '', inputs: [], outputNames: [], sha256: '' });
    // field 9 varint 150, field 10 length-delimited "xy", then an input tensor with an unpacked shape (3 << 3 | 0).
    const tensorBody = Buffer.from([0x0a, 0x01, 0x74, 0x18, 0x02, 0x18, 0x05]);
    const extra = Buffer.concat([Buffer.from([0x48, 0x96, 0x01, 0x52, 0x02, 0x78, 0x79, 0x22, tensorBody.length]), tensorBody]);
    const bytes = Buffer.concat([base, extra]);
    const decoded = decodePredictRequest(bytes);
    expect(decoded).toEqual(PredictRequest.decode(bytes));
    expect(decoded.inputs[0]).toMatchObject({ name: 't', shape: [2, 5] });
  });
});
