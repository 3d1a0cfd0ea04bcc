export * from './config-schema';
export * as parse from './parsers';
export * from './common-config';
