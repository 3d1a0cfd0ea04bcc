export * from './errors';
export * from './status-mapper';
export * from './handlers';
export * from './grpc-server';
export * from './grpc-client';
export * from './model-ref';
export * from './tls';
