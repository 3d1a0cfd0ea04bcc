export * from './wait-for';
export * from './free-port';
export * from './redis-server';
export * from './temp-dir';
export * from '@maas/onnx';
export * from './child-service';
export * from './consul-double';
