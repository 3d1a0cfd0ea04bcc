import { ConfigError, describeConfig, loadConfig } from './config-schema';
import * as parse from './parsers';

const schema = {
  port: { env: 'X_PORT', default: 50051, parse: parse.port, doc: 'port' },
  redisUrl: { env: 'X_REDIS_URL', default: '', parse: parse.url('redis:'), doc: 'redis' },
  nodes: { env: 'X_NODES', default: [] as string[], parse: parse.hostPortList, doc: 'nodes' },
  budget: { env: 'X_BUDGET', default: 1024, parse: parse.byteSize, doc: 'budget' },
  factor: { env: 'X_FACTOR', default: 3, parse: parse.number({ min: 0 }), doc: 'factor' },
};

describe('loadConfig', () => {
  it('uses defaults when variables are unset or empty', () => {
    expect(loadConfig(schema, { X_PORT: ' ' })).toEqual({ port: 50051, redisUrl: '', nodes: [], budget: 1024, factor: 3 });
  });

  it('prefers explicit values over the environment', () => {
    const config = loadConfig(schema, { X_PORT: '1', X_BUDGET: '64MiB' }, { port: 7 });
    expect(config.port).toBe(7);
    expect(config.budget).toBe(64 * 1024 * 1024);
  });

  it('parses fractional numbers', () => {
    expect(loadConfig(schema, { X_FACTOR: '2.5' }).factor).toBe(2.5);
  });

  it('parses lists of addresses', () => {
    expect(loadConfig(schema, { X_NODES: '127.0.0.1:1, [::1]:2' }).nodes).toEqual(['127.0.0.1:1', '[::1]:2']);
  });

  it.each([
    ['X_PORT', '70000', /X_PORT="70000" is invalid: expected an integer from 0 to 65535/],
    ['X_REDIS_URL', 'http://x', /X_REDIS_URL=.*expected a URL with protocol redis:/],
    ['X_NODES', 'nohost', /X_NODES=.*expected host:port/],
    ['X_BUDGET', 'lots', /X_BUDGET=.*expected a size/],
    ['X_FACTOR', '-1', /X_FACTOR="-1" is invalid: expected a number from 0/],
    ['X_FACTOR', 'fast', /X_FACTOR=.*expected a number/],
  ])('names the bad variable %s', (name, value, message) => {
    let thrown: unknown;
    try {
      loadConfig(schema, { [name]: value });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).variable).toBe(name);
    expect((thrown as ConfigError).message).toMatch(message);
  });

  it('describes every field', () => {
    expect(describeConfig(schema).map((row) => row.env)).toEqual(['X_PORT', 'X_REDIS_URL', 'X_NODES', 'X_BUDGET', 'X_FACTOR']);
  });
});
