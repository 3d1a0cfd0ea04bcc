/**
 * The MaaS wire contract: messages, enums, service definitions and clients
 * generated from `proto/maas/v1` (see `npm run gen`). Import wire types from
 * here, never from `./gen` directly.
 */
export * from './gen/maas/v1/tensor';
export * from './gen/maas/v1/registry';
export * from './gen/maas/v1/inference';
export * from './gen/maas/v1/gateway';
export { gatewayFileDescriptors, protoFiles, protoRoot, splitFileDescriptorSet } from './proto-files';
/** The Open Inference Protocol (KServe V2) gRPC API, package `inference`. */
export * as kserve from './gen/inference/grpc_predict_v2';
export * from './predict-wire';
