import { DataType, kserve, triton, type PredictResponse } from '@maas/proto';
import { InvalidArgumentError } from '@maas/rpc';
import { fromModelInferRequest, parseV2Version, toModelConfig, toModelInferResponse } from './kserve-v2-codec';

function inferRequest(overrides: Partial<kserve.ModelInferRequest>): kserve.ModelInferRequest {
  return kserve.ModelInferRequest.fromPartial({ modelName: 'mlp', modelVersion: '', id: 'req-1', ...overrides });
}

const noContents = kserve.InferTensorContents.fromPartial({});

describe('fromModelInferRequest', () => {
  it('packs typed FP32 contents into little-endian raw bytes', () => {
    const request = inferRequest({
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, 2n], parameters: {}, contents: kserve.InferTensorContents.fromPartial({ fp32Contents: [1.5, -2] }) }],
    });
    const predict = fromModelInferRequest(request);
    expect(predict).toMatchObject({ model: 'mlp', version: 0, outputNames: [] });
    const tensor = predict.inputs[0];
    expect(tensor).toMatchObject({ name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, 2] });
    const bytes = Buffer.from(tensor.rawData);
    expect([bytes.readFloatLE(0), bytes.readFloatLE(4)]).toEqual([1.5, -2]);
  });

  it('takes raw_input_contents as they are, one per input', () => {
    const raw = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
    const predict = fromModelInferRequest(
      inferRequest({ modelVersion: '3', inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, 4n], parameters: {}, contents: undefined }], rawInputContents: [raw] }),
    );
    expect(predict.version).toBe(3);
    expect(Buffer.from(predict.inputs[0].rawData).equals(raw)).toBe(true);
  });

  it('splits BYTES raw contents on their 4-byte length prefixes', () => {
    const parts = ['hé', '', 'xyz'].map((s) => {
      const body = Buffer.from(s);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(body.length);
      return Buffer.concat([len, body]);
    });
    const predict = fromModelInferRequest(
      inferRequest({ inputs: [{ name: 's', datatype: 'BYTES', shape: [3n], parameters: {}, contents: undefined }], rawInputContents: [Buffer.concat(parts)] }),
    );
    expect(predict.inputs[0].stringData).toEqual(['hé', '', 'xyz']);
  });

  it.each([
    [{ modelName: '' }, /model_name is empty/],
    [{ modelVersion: 'latest' }, /model version "latest" is not valid/],
    [{ inputs: [{ name: 'x', datatype: 'BF16', shape: [1n], parameters: {} }], rawInputContents: [Buffer.alloc(2)] }, /datatype "BF16" is not supported; expected one of/],
    [{ inputs: [{ name: 'x', datatype: 'FP32', shape: [1n], parameters: {} }], rawInputContents: [] }, /no contents and no raw_input_contents/],
    [
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [2n], parameters: {}, contents: kserve.InferTensorContents.fromPartial({ fp32Contents: [1] }) }] },
      /fp32_contents holds 1 elements, expected 2/,
    ],
    [{ inputs: [{ name: 'x', datatype: 'FP32', shape: [1n], parameters: {} }], rawInputContents: [Buffer.alloc(4), Buffer.alloc(4)] }, /expected one per input/],
    [{ inputs: [{ name: 'x', datatype: 'FP32', shape: [-1n], parameters: {} }], rawInputContents: [Buffer.alloc(4)] }, /must hold non-negative integers/],
    [{ inputs: [{ name: 's', datatype: 'BYTES', shape: [1n], parameters: {} }], rawInputContents: [Buffer.from([9, 0, 0, 0, 65])] }, /runs past the end/],
    [{ inputs: [{ name: 's', datatype: 'BYTES', shape: [1n], parameters: {} }], rawInputContents: [Buffer.from([4, 0, 0, 0, 0xff, 0xfe, 0x00, 0x80])] }, /BYTES element 0 \(4 bytes, starting fffe0080\) is not valid UTF-8/],
    [{ inputs: [{ name: 's', datatype: 'BYTES', shape: [1n], parameters: {}, contents: { ...noContents, bytesContents: [Buffer.from([0xc3])] } }] }, /BYTES element 0 .* is not valid UTF-8/],
    [{ parameters: { priority: { uint64Param: 1 } } }, /the request: parameter "priority" not supported/],
    [{ outputs: [{ name: 'output', parameters: { classification: { int64Param: 3 } } }] }, /output "output": parameter "classification" not supported/],
    [{ inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, 1n], parameters: {}, contents: { ...noContents, fp32Contents: [1] } }], rawInputContents: [Buffer.alloc(4)] }, /typed contents and the request has raw_input_contents/],
  ])('rejects %j as INVALID_ARGUMENT', (overrides, message) => {
    expect(() => fromModelInferRequest(inferRequest(overrides as Partial<kserve.ModelInferRequest>))).toThrow(InvalidArgumentError);
    expect(() => fromModelInferRequest(inferRequest(overrides as Partial<kserve.ModelInferRequest>))).toThrow(message);
  });
});

describe('toModelInferResponse', () => {
  const output = Buffer.alloc(12);
  [0.25, -1, 7].forEach((v, i) => output.writeFloatLE(v, i * 4));
  const response: PredictResponse = {
    model: 'mlp',
    version: 2,
    outputs: [{ name: 'output', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, 3], rawData: output, stringData: [] }],
  };

  it('answers raw contents to a typed request, as Triton does', () => {
    const answer = toModelInferResponse(inferRequest({}), response);
    expect(answer).toMatchObject({ modelName: 'mlp', modelVersion: '2', id: 'req-1' });
    expect(answer.outputs[0]).toMatchObject({ name: 'output', datatype: 'FP32', shape: [1n, 3n] });
    expect(answer.outputs[0].contents).toBeUndefined();
    expect(Buffer.from(answer.rawOutputContents[0]).equals(output)).toBe(true);
  });

  it('answers raw contents to a raw request', () => {
    const answer = toModelInferResponse(inferRequest({ rawInputContents: [Buffer.alloc(4)] }), response);
    expect(answer.outputs[0].contents).toBeUndefined();
    expect(Buffer.from(answer.rawOutputContents[0]).equals(output)).toBe(true);
  });
});

describe('parseV2Version', () => {
  it('maps empty to 0 and digits to numbers', () => {
    expect(parseV2Version('')).toBe(0);
    expect(parseV2Version('12')).toBe(12);
    expect(() => parseV2Version('0')).toThrow(InvalidArgumentError);
  });
});

describe('toModelConfig', () => {
  const inputs = [{ name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [-1, 4], dimNames: [] }];
  const outputs = [{ name: 'output', dtype: DataType.DATA_TYPE_STRING, shape: [-1, 3], dimNames: [] }];

  it('leaves the batch dimension out of dims when dynamic batching is on, as Triton does', () => {
    const config = toModelConfig({ model: 'mlp', inputs, outputs, runtime: { maxBatchSize: 16, maxQueueDelayMicros: 500, instanceCount: 2, maxQueueSize: 0 } });
    expect(config).toMatchObject({ name: 'mlp', platform: 'onnxruntime_onnx', backend: 'onnxruntime', maxBatchSize: 16 });
    expect(config.input).toEqual([{ name: 'input', dataType: triton.DataType.TYPE_FP32, dims: [4n] }]);
    expect(config.output).toEqual([{ name: 'output', dataType: triton.DataType.TYPE_STRING, dims: [3n] }]);
    expect(config.schedulingChoice).toEqual({ $case: 'dynamicBatching', value: { preferredBatchSize: [], maxQueueDelayMicroseconds: 500n } });
    expect(config.instanceGroup).toEqual([{ name: 'mlp_0', count: 2, kind: triton.ModelInstanceGroup_Kind.KIND_CPU }]);
  });

  it('answers max_batch_size 0 and whole shapes without it', () => {
    const config = toModelConfig({ model: 'mlp', inputs, outputs, runtime: { maxBatchSize: 1, maxQueueDelayMicros: 0, instanceCount: 1, maxQueueSize: 0 } });
    expect(config.maxBatchSize).toBe(0);
    expect(config.input[0].dims).toEqual([-1n, 4n]);
    expect(config.schedulingChoice).toBeUndefined();
  });
});
