import { Metadata, status, type ServerErrorResponse } from '@grpc/grpc-js';
import { isGrpcStatusError, isMaasError, ResourceExhaustedError, RETRY_ELSEWHERE_TRAILER, statusOf, type GrpcStatusError } from './errors';

/**
 * Hook the boundary calls for errors that are not domain errors: they answer
 * INTERNAL with a generic message, and are reported here so the cause is logged.
 */
export type UnexpectedErrorReporter = (err: unknown, method: string) => void;

let reportUnexpected: UnexpectedErrorReporter = (err, method) => {
  console.error(`unexpected error in ${method}:`, err);
};

/**
 * Whether a failed call is a RESOURCE_EXHAUSTED its server marked as its own
 * state (queue, memory) with {@link RETRY_ELSEWHERE_TRAILER}: another replica
 * may take the call. The caller's side of the mark toServerError sets.
 */
export function markedRetryElsewhere(err: unknown): boolean {
  if (statusOf(err) !== status.RESOURCE_EXHAUSTED) return false;
  const trailers = (err as { metadata?: unknown }).metadata;
  return trailers instanceof Metadata && trailers.get(RETRY_ELSEWHERE_TRAILER).length > 0;
}

/** A status a call ends with: its code, its message and its trailers. */
export interface CallStatus {
  code: status;
  details: string;
  metadata: Metadata | null;
}

/** A failed call as a gRPC client reports it: `code`, `details`, and the trailers as `metadata`. */
export interface CallFailure extends GrpcStatusError {
  metadata: Metadata;
}

/** The error a client's failed call rejects with, worded as grpc-js words it (`<code> <NAME>: <details>`). */
export function callFailure(code: status, details: string, metadata: Metadata = new Metadata()): CallFailure {
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata });
}

/** Replaces the reporter of unexpected handler errors (the apps pass their logger). */
export function setUnexpectedErrorReporter(reporter: UnexpectedErrorReporter): void {
  reportUnexpected = reporter;
}

/**
 * Turns anything a handler threw into a gRPC status for the caller. Domain
 * errors and statuses relayed from upstream services keep their code and
 * message; anything else becomes INTERNAL without leaking its text.
 */
export function toServerError(err: unknown, method: string): ServerErrorResponse {
  if (isMaasError(err)) {
    const answer: ServerErrorResponse = Object.assign(new Error(err.message), { code: err.code, details: err.message });
    if (err instanceof ResourceExhaustedError && err.retryElsewhere) {
      answer.metadata = new Metadata();
      answer.metadata.set(RETRY_ELSEWHERE_TRAILER, '1');
    }
    return answer;
  }
  if (isGrpcStatusError(err)) {
    const relayed: ServerErrorResponse = Object.assign(new Error(err.details), {
      code: err.code,
      details: err.details,
    });
    const trailers = (err as { metadata?: unknown }).metadata;
    if (trailers instanceof Metadata) relayed.metadata = trailers;
    return relayed;
  }
  reportUnexpected(err, method);
  return Object.assign(new Error('internal error'), {
    code: status.INTERNAL,
    details: `internal error while handling ${method}; the server logged the cause`,
  });
}

/** What anything a handler threw answers the caller, as a {@link CallStatus} (see {@link toServerError}). */
export function callStatusOf(err: unknown, method: string): CallStatus {
  const answer = toServerError(err, method);
  return { code: answer.code ?? status.UNKNOWN, details: answer.details ?? answer.message, metadata: answer.metadata ?? null };
}
