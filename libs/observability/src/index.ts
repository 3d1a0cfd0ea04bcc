export * from './logger';
export * from './metrics-registry';
export * from './metrics-server';
export * from './rpc-metrics';
export * from './rpc-logging';
export * from './stat-metrics';
