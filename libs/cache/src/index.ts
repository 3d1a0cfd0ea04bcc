export * from './metadata-cache';
export * from './cache-memory';
export * from './cache-redis';
export * from './cache-near';
export * from './cached-metadata';
export * from './change-bus';
export * from './create';
export * from './cache-lease';
