export * from './config-schema';
export * as parse from './parsers';
export * from './common-config';
export * from './idle-gc';
