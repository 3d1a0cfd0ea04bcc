export * from './inference-client';
export * from './node-pool';
