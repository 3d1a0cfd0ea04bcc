import { status } from '@grpc/grpc-js';

/**
 * Base class of every domain error. Each subclass fixes the gRPC status code the
 * handler boundary answers with; the message is shown to the caller as-is, so it
 * must say what was wrong and what was expected.
 */
export class MaasError extends Error {
  constructor(
    readonly code: status,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.INVALID_ARGUMENT, message, options);
  }
}

export class NotFoundError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.NOT_FOUND, message, options);
  }
}

export class AlreadyExistsError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.ALREADY_EXISTS, message, options);
  }
}

export class FailedPreconditionError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.FAILED_PRECONDITION, message, options);
  }
}

/**
 * Trailer a node sets on a RESOURCE_EXHAUSTED that is this node's state (its
 * queue, its memory), not the request's: another node may well take it.
 * Without it a RESOURCE_EXHAUSTED (a size limit) fails the same everywhere.
 */
export const RETRY_ELSEWHERE_TRAILER = 'maas-retry-elsewhere';

export class ResourceExhaustedError extends MaasError {
  /** The limit hit is this server's state (queue, memory), not the request's: another replica may succeed. */
  readonly retryElsewhere: boolean;

  constructor(message: string, options?: { cause?: unknown; retryElsewhere?: boolean }) {
    super(status.RESOURCE_EXHAUSTED, message, options);
    this.retryElsewhere = options?.retryElsewhere ?? false;
  }
}

/** The request named a version whose artifact changed meanwhile (deleted and re-created): resolve it again. */
export class AbortedError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.ABORTED, message, options);
  }
}

export class UnavailableError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.UNAVAILABLE, message, options);
  }
}

export class DeadlineExceededError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.DEADLINE_EXCEEDED, message, options);
  }
}

export class CancelledError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.CANCELLED, message, options);
  }
}

export class UnauthenticatedError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.UNAUTHENTICATED, message, options);
  }
}

export class PermissionDeniedError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.PERMISSION_DENIED, message, options);
  }
}

export class InternalError extends MaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(status.INTERNAL, message, options);
  }
}

export function isMaasError(err: unknown): err is MaasError {
  return err instanceof MaasError;
}

/** A gRPC error as grpc-js clients report it: an Error with `code` and `details`. */
export interface GrpcStatusError extends Error {
  code: status;
  details: string;
}

/** True for errors that carry a gRPC status (client-side `ServiceError`s included). */
export function isGrpcStatusError(err: unknown): err is GrpcStatusError {
  return (
    err instanceof Error &&
    typeof (err as Partial<GrpcStatusError>).code === 'number' &&
    typeof (err as Partial<GrpcStatusError>).details === 'string'
  );
}

/** The gRPC status code an error stands for (UNKNOWN when it carries none). */
export function statusOf(err: unknown): status {
  if (err instanceof MaasError) return err.code;
  if (isGrpcStatusError(err)) return err.code;
  return status.UNKNOWN;
}

/** Name of a status code, e.g. `NOT_FOUND`. */
export function statusName(code: status): string {
  return status[code] ?? `CODE_${code}`;
}
