export * from './dtype';
export * from './tensor-codec';
export * from './tensor-validation';
export * from './tensor-batch';
