export * from './onnx-signature';
export * from './onnx-verify';
export * from './onnx-models';
export * from './onnx-model-file';
