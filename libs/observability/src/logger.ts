import pino, { type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/** Options of {@link createLogger}. */
export interface LoggerConfig {
  /** Service name put on every line. */
  name: string;
  /** pino level. @default 'info' */
  level?: string;
  /** Where lines go. @default stdout */
  destination?: NodeJS.WritableStream;
}

/** Structured JSON logger of one service. */
export function createLogger(config: LoggerConfig): Logger {
  const options: LoggerOptions = {
    name: config.name,
    level: config.level ?? 'info',
    base: { service: config.name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return config.destination ? pino(options, config.destination) : pino(options);
}

/** A logger that drops everything, for tests and libraries used without one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
