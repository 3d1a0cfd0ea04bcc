export * from './onnx-signature';
export * from './onnx-verify';
