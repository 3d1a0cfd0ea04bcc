import { DataType } from '@maas/proto';

/** onnxruntime-node's name of an element type. */
export type OrtTypeName =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'bool'
  | 'string';

/** Facts about one element type. */
export interface DTypeInfo {
  dtype: DataType;
  /** Short name used in messages and the CLI, e.g. `float32`. */
  name: OrtTypeName;
  /** ONNX `TensorProto.DataType` number. */
  onnx: number;
  /** Bytes per element in `raw_data`; 0 for strings. */
  size: number;
}

const TABLE: DTypeInfo[] = [
  { dtype: DataType.DATA_TYPE_FLOAT32, name: 'float32', onnx: 1, size: 4 },
  { dtype: DataType.DATA_TYPE_UINT8, name: 'uint8', onnx: 2, size: 1 },
  { dtype: DataType.DATA_TYPE_INT8, name: 'int8', onnx: 3, size: 1 },
  { dtype: DataType.DATA_TYPE_UINT16, name: 'uint16', onnx: 4, size: 2 },
  { dtype: DataType.DATA_TYPE_INT16, name: 'int16', onnx: 5, size: 2 },
  { dtype: DataType.DATA_TYPE_INT32, name: 'int32', onnx: 6, size: 4 },
  { dtype: DataType.DATA_TYPE_INT64, name: 'int64', onnx: 7, size: 8 },
  { dtype: DataType.DATA_TYPE_STRING, name: 'string', onnx: 8, size: 0 },
  { dtype: DataType.DATA_TYPE_BOOL, name: 'bool', onnx: 9, size: 1 },
  { dtype: DataType.DATA_TYPE_FLOAT16, name: 'float16', onnx: 10, size: 2 },
  { dtype: DataType.DATA_TYPE_FLOAT64, name: 'float64', onnx: 11, size: 8 },
  { dtype: DataType.DATA_TYPE_UINT32, name: 'uint32', onnx: 12, size: 4 },
  { dtype: DataType.DATA_TYPE_UINT64, name: 'uint64', onnx: 13, size: 8 },
];

const byDType = new Map(TABLE.map((info) => [info.dtype, info]));
const byName = new Map(TABLE.map((info) => [info.name as string, info]));
const byOnnx = new Map(TABLE.map((info) => [info.onnx, info]));

/** Every supported element type. */
export const SUPPORTED_DTYPES: readonly DTypeInfo[] = TABLE;

/** Info for a wire dtype, or undefined when it is unspecified or unknown. */
export function dtypeInfo(dtype: DataType): DTypeInfo | undefined {
  return byDType.get(dtype);
}

/** Info for an onnxruntime type name (`float32`, `int64`, ...). */
export function dtypeFromName(name: string): DTypeInfo | undefined {
  return byName.get(name.toLowerCase());
}

/** Info for an ONNX `TensorProto.DataType` number. */
export function dtypeFromOnnx(elemType: number): DTypeInfo | undefined {
  return byOnnx.get(elemType);
}

/** Readable name of a wire dtype for messages. */
export function dtypeName(dtype: DataType): string {
  return byDType.get(dtype)?.name ?? `unknown dtype ${dtype}`;
}
