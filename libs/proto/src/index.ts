/**
 * The MaaS wire contract: messages, enums, service definitions and clients
 * generated from `proto/maas/v1` (see `npm run gen`). Import wire types from
 * here, never from `./gen` directly.
 */
export * from './gen/maas/v1/tensor';
export * from './gen/maas/v1/registry';
export * from './gen/maas/v1/inference';
export * from './gen/maas/v1/gateway';
export { gatewayFileDescriptors, protoRoot, splitFileDescriptorSet } from './proto-files';
/** The Open Inference Protocol (KServe V2) gRPC API, package `inference`. */
export * as kserve from './gen/inference/grpc_predict_v2';
/** Triton's model configuration, the part the Open Inference Protocol's ModelConfig answers with. */
export * as triton from './gen/inference/model_config';
export * from './predict-wire';
