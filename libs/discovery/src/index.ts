export * from './discovery';
export * from './discovery-static';
export * from './discovery-consul';
export * from './registrar';
export * from './create';
export { ConsulClient, type ConsulRegistration, type ConsulServiceEntry, type HealthQueryResult } from './consul-client';
export * from './rendezvous';
