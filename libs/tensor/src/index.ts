export * from './dtype';
