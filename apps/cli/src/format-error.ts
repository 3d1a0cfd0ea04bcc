import { isGrpcStatusError, isMaasError, statusName } from '@maas/rpc';

/** One line for stderr: `error: <STATUS>: <message>` for gRPC failures, `error: <message>` otherwise. */
export function formatError(err: unknown): string {
  if (isMaasError(err)) return `error: ${statusName(err.code)}: ${err.message}`;
  if (isGrpcStatusError(err)) return `error: ${statusName(err.code)}: ${err.details || err.message}`;
  if (err instanceof Error) return `error: ${err.message}`;
  return `error: ${String(err)}`;
}
