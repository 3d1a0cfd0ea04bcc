export * from './logger';
export * from './metrics-registry';
export * from './metrics-server';
export * from './rpc-metrics';
export * from './rpc-interceptor';
export * from './stat-metrics';
