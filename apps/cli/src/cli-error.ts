/** A usage or input problem found by the CLI itself (this file imports nothing, so `--help` loads no gRPC). */
export class CliError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
  }
}
