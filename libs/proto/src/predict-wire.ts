/**
 * A one-pass codec for the two messages that carry tensors, PredictRequest
 * and PredictResponse. The generated codec copies tensor bytes several times
 * per message (writer chunks, `finish()`, `Buffer.from`) and once more on
 * decode; for a 1 MB output that is most of a hop's CPU. Here encoding sizes
 * the message first and copies each tensor's bytes exactly once into one
 * buffer, and decoding hands out tensor bytes as views of the received
 * buffer. The bytes are the same as the generated encoder's, field for field.
 */
import { makeGenericClientConstructor, type ChannelCredentials, type ClientOptions, type MethodDefinition } from '@grpc/grpc-js';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { GatewayServiceClient, GatewayServiceService } from './gen/maas/v1/gateway';
import { InferenceServiceClient, InferenceServiceService, PredictRequest, PredictResponse } from './gen/maas/v1/inference';
import { Tensor } from './gen/maas/v1/tensor';

const varintSize = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : n < 2 ** 35 ? 5 : n < 2 ** 42 ? 6 : n < 2 ** 49 ? 7 : 8);
const fieldSize = (bodyBytes: number): number => 1 + varintSize(bodyBytes) + bodyBytes;

/** Whether every number of a tensor fits the fast path (non-negative safe integers). */
function plain(t: Tensor): boolean {
  if (!Number.isSafeInteger(t.dtype) || t.dtype < 0) return false;
  for (const d of t.shape) if (!Number.isSafeInteger(d) || d < 0) return false;
  return true;
}

function shapeBytes(shape: number[]): number {
  let n = 0;
  for (const d of shape) n += varintSize(d);
  return n;
}

function tensorBytes(t: Tensor): number {
  let n = 0;
  if (t.name !== '') n += fieldSize(Buffer.byteLength(t.name));
  if (t.dtype !== 0) n += 1 + varintSize(t.dtype);
  if (t.shape.length !== 0) n += fieldSize(shapeBytes(t.shape));
  if (t.rawData.length !== 0) n += fieldSize(t.rawData.length);
  for (const s of t.stringData) n += fieldSize(Buffer.byteLength(s));
  return n;
}

/** Fields 1 (model) and 2 (version), which both messages start with. */
interface Head {
  model: string;
  version: number;
}

function headBytes(m: Head): number {
  return (m.model !== '' ? fieldSize(Buffer.byteLength(m.model)) : 0) + (m.version !== 0 ? 1 + varintSize(m.version) : 0);
}

/** Writes into a buffer sized in advance. */
class Out {
  pos = 0;
  readonly buf: Buffer;

  /**
   * For a message of `total` bytes whose tensors' bytes of `byReference` and
   * more stay out of {@link buf}, taken by reference (see {@link pieces}).
   */
  constructor(
    total: number,
    tensors: readonly Tensor[],
    readonly byReference = Infinity,
  ) {
    for (const t of tensors) if (t.rawData.length >= byReference) total -= t.rawData.length;
    this.buf = Buffer.allocUnsafe(total);
  }

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
  }

  head(m: Head): void {
    if (m.model !== '') this.string(10, m.model);
    if (m.version !== 0) {
      this.buf[this.pos++] = 16;
      this.varint(m.version);
    }
  }

  string(tag: number, s: string): void {
    this.buf[this.pos++] = tag;
    this.varint(Buffer.byteLength(s));
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  /** Bytes from {@link byReference} up are not copied: the message is then a list of pieces (see {@link pieces}). */
  private readonly taken: Buffer[] = [];
  private segmentStart = 0;

  bytes(tag: number, b: Uint8Array): void {
    this.buf[this.pos++] = tag;
    this.varint(b.length);
    if (b.length >= this.byReference) {
      this.taken.push(this.buf.subarray(this.segmentStart, this.pos), Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      this.segmentStart = this.pos;
      return;
    }
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /**
   * The message as written: the pieces of `buf` between tensors taken by
   * reference, and those tensors; `buf` itself when no tensor was taken.
   */
  pieces(): Buffer | Buffer[] {
    if (this.taken.length === 0) return this.buf;
    return this.pos > this.segmentStart ? [...this.taken, this.buf.subarray(this.segmentStart, this.pos)] : this.taken;
  }

  tensor(tag: number, t: Tensor, size: number): void {
    this.buf[this.pos++] = tag;
    this.varint(size);
    if (t.name !== '') this.string(10, t.name);
    if (t.dtype !== 0) {
      this.buf[this.pos++] = 16;
      this.varint(t.dtype);
    }
    if (t.shape.length !== 0) {
      this.buf[this.pos++] = 26;
      this.varint(shapeBytes(t.shape));
      for (const d of t.shape) this.varint(d);
    }
    if (t.rawData.length !== 0) this.bytes(34, t.rawData);
    for (const s of t.stringData) this.string(42, s);
  }
}

/**
 * A PredictRequest written in one pass, tensor bytes of `byReferenceFrom`
 * bytes and more left out of the buffer (see {@link Out.pieces}); undefined
 * when it needs the generated encoder (see {@link plain}).
 */
function writeRequest(m: PredictRequest, byReferenceFrom = Infinity): Out | undefined {
  if (!m.inputs.every(plain) || !(Number.isInteger(m.version) && m.version >= 0)) return undefined;
  const sizes = m.inputs.map(tensorBytes);
  let total = headBytes(m);
  if (m.alias !== '') total += fieldSize(Buffer.byteLength(m.alias));
  for (const s of sizes) total += fieldSize(s);
  for (const name of m.outputNames) total += fieldSize(Buffer.byteLength(name));
  if (m.sha256 !== '') total += fieldSize(Buffer.byteLength(m.sha256));
  const out = new Out(total, m.inputs, byReferenceFrom);
  out.head(m);
  if (m.alias !== '') out.string(26, m.alias);
  m.inputs.forEach((t, i) => out.tensor(34, t, sizes[i]));
  for (const name of m.outputNames) out.string(42, name);
  if (m.sha256 !== '') out.string(50, m.sha256);
  return out;
}

/** PredictRequest bytes, equal to the generated encoder's, with each tensor's bytes copied once. */
export function encodePredictRequest(m: PredictRequest): Buffer {
  return writeRequest(m)?.buf ?? Buffer.from(PredictRequest.encode(m).finish());
}

/**
 * PredictRequest bytes as pieces, together equal to {@link encodePredictRequest}'s,
 * tensor bytes of `byReferenceFrom` bytes and more not copied (as
 * {@link encodePredictResponsePieces}): for a request relayed while its
 * tensors stay unchanged, once or several times (retries, hedged copies).
 */
export function encodePredictRequestPieces(m: PredictRequest, byReferenceFrom = 64 * 1024): Buffer | Buffer[] {
  return writeRequest(m, byReferenceFrom)?.pieces() ?? Buffer.from(PredictRequest.encode(m).finish());
}

/** How many bytes {@link encodePredictResponse} makes of `m`, without encoding it. */
export function predictResponseSize(m: PredictResponse): number {
  if (!m.outputs.every(plain) || !(Number.isInteger(m.version) && m.version >= 0)) return PredictResponse.encode(m).finish().length;
  let total = headBytes(m);
  for (const t of m.outputs) total += fieldSize(tensorBytes(t));
  return total;
}

/**
 * A PredictResponse written in one pass, tensor bytes of `byReferenceFrom`
 * bytes and more left out of the buffer (see {@link Out.pieces}); undefined
 * when it needs the generated encoder (see {@link plain}).
 */
function writeResponse(m: PredictResponse, byReferenceFrom = Infinity): Out | undefined {
  if (!m.outputs.every(plain) || !(Number.isInteger(m.version) && m.version >= 0)) return undefined;
  const sizes = m.outputs.map(tensorBytes);
  let total = headBytes(m);
  for (const s of sizes) total += fieldSize(s);
  const out = new Out(total, m.outputs, byReferenceFrom);
  out.head(m);
  m.outputs.forEach((t, i) => out.tensor(26, t, sizes[i]));
  return out;
}

/**
 * PredictResponse bytes as pieces to write one after the other, together equal
 * to {@link encodePredictResponse}'s: tensor bytes of `byReferenceFrom` bytes
 * and more are pieces of their own, the tensors' memory itself, not copied;
 * one buffer when there is no such tensor.
 * For an answer that is written out and dropped (its tensors are not changed
 * while the write is in progress).
 */
export function encodePredictResponsePieces(m: PredictResponse, byReferenceFrom = 64 * 1024): Buffer | Buffer[] {
  return writeResponse(m, byReferenceFrom)?.pieces() ?? Buffer.from(PredictResponse.encode(m).finish());
}

/** PredictResponse bytes, equal to the generated encoder's, with each tensor's bytes copied once. */
export function encodePredictResponse(m: PredictResponse): Buffer {
  return writeResponse(m)?.buf ?? Buffer.from(PredictResponse.encode(m).finish());
}

/** A view of received bytes, no copy. */
const view = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

function readTensor(reader: BinaryReader, length: number): Tensor {
  const end = reader.pos + length;
  const t: Tensor = { name: '', dtype: 0, shape: [], rawData: Buffer.alloc(0), stringData: [] };
  while (reader.pos < end) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) t.name = reader.string();
    else if (field === 2 && wireType === WireType.Varint) t.dtype = reader.int32();
    else if (field === 3 && wireType === WireType.LengthDelimited) {
      const stop = reader.uint32() + reader.pos;
      while (reader.pos < stop) t.shape.push(Number(reader.int64()));
    } else if (field === 3 && wireType === WireType.Varint) t.shape.push(Number(reader.int64()));
    else if (field === 4 && wireType === WireType.LengthDelimited) t.rawData = view(reader.bytes());
    else if (field === 5 && wireType === WireType.LengthDelimited) t.stringData.push(reader.string());
    else reader.skip(wireType);
  }
  return t;
}

/** Decodes a PredictRequest; tensor bytes are views of `bytes`. */
export function decodePredictRequest(bytes: Uint8Array): PredictRequest {
  const reader = new BinaryReader(bytes);
  const m: PredictRequest = { model: '', version: 0, alias: '', inputs: [], outputNames: [], sha256: '' };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) m.model = reader.string();
    else if (field === 2 && wireType === WireType.Varint) m.version = reader.uint32();
    else if (field === 3 && wireType === WireType.LengthDelimited) m.alias = reader.string();
    else if (field === 4 && wireType === WireType.LengthDelimited) m.inputs.push(readTensor(reader, reader.uint32()));
    else if (field === 5 && wireType === WireType.LengthDelimited) m.outputNames.push(reader.string());
    else if (field === 6 && wireType === WireType.LengthDelimited) m.sha256 = reader.string();
    else reader.skip(wireType);
  }
  return m;
}

/** Decodes a PredictResponse; tensor bytes are views of `bytes`. */
export function decodePredictResponse(bytes: Uint8Array): PredictResponse {
  const reader = new BinaryReader(bytes);
  const m: PredictResponse = { model: '', version: 0, outputs: [] };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) m.model = reader.string();
    else if (field === 2 && wireType === WireType.Varint) m.version = reader.uint32();
    else if (field === 3 && wireType === WireType.LengthDelimited) m.outputs.push(readTensor(reader, reader.uint32()));
    else reader.skip(wireType);
  }
  return m;
}

type PredictMethod = MethodDefinition<PredictRequest, PredictResponse>;

/** A service definition whose Predict goes through this codec on both sides. */
function withPredictWire<D extends { predict: PredictMethod }>(definition: D): D {
  return {
    ...definition,
    predict: {
      ...definition.predict,
      requestSerialize: encodePredictRequest,
      requestDeserialize: decodePredictRequest,
      responseSerialize: encodePredictResponse,
      responseDeserialize: decodePredictResponse,
    },
  };
}

/** `maas.v1.InferenceService` with the one-pass Predict codec; serve and call it in place of the generated definition. */
export const InferenceServiceWire = withPredictWire(InferenceServiceService);
/** `maas.v1.GatewayService` with the one-pass Predict codec. */
export const GatewayServiceWire = withPredictWire(GatewayServiceService);

type ClientConstructor<C> = new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>) => C;

/** A generated-style InferenceService client whose Predict uses the one-pass codec. */
export const InferenceServiceWireClient = makeGenericClientConstructor(InferenceServiceWire, 'maas.v1.InferenceService') as unknown as ClientConstructor<InferenceServiceClient>;
/** A generated-style GatewayService client whose Predict uses the one-pass codec. */
export const GatewayServiceWireClient = makeGenericClientConstructor(GatewayServiceWire, 'maas.v1.GatewayService') as unknown as ClientConstructor<GatewayServiceClient>;
