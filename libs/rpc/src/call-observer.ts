import { ServerInterceptingCall, status, type Metadata, type ServerInterceptor } from '@grpc/grpc-js';
import { callDeadlineMs } from './handlers';
import { callStatusOf, type CallStatus } from './status-mapper';

/** What a call is known by when its headers arrive. */
export interface CallHead {
  /** `/package.Service/Method`. */
  readonly path: string;
  /** The caller's metadata; an observer may amend it (a request id) for the handler to read. */
  readonly metadata: Metadata;
  /** The caller's deadline, epoch ms; Infinity when none was set. */
  readonly deadline: number;
}

/** A status to answer a call with, trailers included. */
export type CallRefusal = CallStatus;

/** How a call ended. */
export interface CallEnd {
  code: number;
  details: string;
  /** When the call ended (`process.hrtime.bigint()`), for an end told later than that (see {@link afterWrites}); absent: now. */
  endedAt?: bigint;
}

/** One call as an observer follows it. */
export interface CallWatch {
  /** The decoded request message (unary calls: once). */
  message?(message: unknown): void;
  /** The status the caller was sent, or CANCELLED / DEADLINE_EXCEEDED for a call that ended without one. Once. */
  end(outcome: CallEnd): void;
}

/**
 * Per-call bookkeeping (request ids, logs, metrics, admission) written once
 * and run on every path a call can take: grpc-js's handlers, through
 * {@link observingInterceptor}, and the raw HTTP/2 routes of
 * {@link GrpcServer.addRawUnary}.
 */
export interface CallObserver {
  /**
   * A call's headers arrived. Throwing refuses the call: the error answers it
   * (through {@link toServerError}) and the watches already begun see that end.
   * Returns undefined for a call this observer does not follow.
   */
  begin(head: CallHead): CallWatch | undefined;
}

/** How grpc-js words a unary or server-streaming call that ended without a request message. */
const NO_REQUEST_MESSAGE = 'Received no request message';

/**
 * Starts the observers on a call, in order. A refusal ends the watches begun
 * before it and is returned as the status to answer.
 */
export function beginWatches(observers: readonly CallObserver[], head: CallHead, method: string): { watches: CallWatch[]; refusal?: CallRefusal } {
  const watches: CallWatch[] = [];
  for (const observer of observers) {
    let watch: CallWatch | undefined;
    try {
      watch = observer.begin(head);
    } catch (err) {
      const refusal = callStatusOf(err, method);
      for (const begun of watches) begun.end(refusal);
      return { watches: [], refusal };
    }
    if (watch) watches.push(watch);
  }
  return { watches };
}

/** Tells every watch how the call ended. */
export function endWatches(watches: readonly CallWatch[], outcome: CallEnd): void {
  for (const watch of watches) watch.end({ code: outcome.code, details: outcome.details, endedAt: outcome.endedAt });
}

/** {@link endWatches} once this turn's writes have left (see {@link afterWrites}), each told when the call ended. */
export function endWatchesOnceWritten(watches: readonly CallWatch[], outcome: CallEnd): void {
  if (watches.length === 0) return;
  const ended = { code: outcome.code, details: outcome.details, endedAt: process.hrtime.bigint() };
  afterWrites(() => endWatches(watches, ended));
}

let deferred: Array<() => void> = [];
let scheduled = false;

function runDeferred(): void {
  scheduled = false;
  drainAfterWrites();
}

/**
 * Runs `task` once the writes made in this turn of the event loop have left,
 * trailers included, so that bookkeeping following an answer (the observers'
 * metrics, logs and intake counts) does not hold it back. Node frames flush
 * when the turn's cork lifts, before any immediate. node:http2 sends an
 * answer's headers and message in a native immediate, and its trailers only
 * once that write has completed, in a native immediate of a later turn;
 * native immediates run before `setImmediate`'s, so a task queued from an
 * immediate into the next turn runs after both (measured on a relaying
 * gateway at one call at a time: a single immediate ran the bookkeeping
 * between the message and the trailers, 70 µs between the two against 48).
 * One pair of immediates serves every task of the turn. A reader of what the
 * tasks keep (statistics, /metrics) calls {@link drainAfterWrites} first.
 */
export function afterWrites(task: () => void): void {
  deferred.push(task);
  if (scheduled) return;
  scheduled = true;
  setImmediate(() => setImmediate(runDeferred));
}

/** Runs every task {@link afterWrites} holds, now: for readers of what they keep, so a caller reads its own calls. */
export function drainAfterWrites(): void {
  while (deferred.length > 0) {
    const now = deferred;
    deferred = [];
    for (const task of now) {
      try {
        task();
      } catch (err) {
        // As uncaught as it was when run in line, without keeping the tasks after it from running.
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }
}

/** Runs {@link CallObserver}s on grpc-js's calls, as one intercepting layer. */
export function observingInterceptor(observers: readonly CallObserver[]): ServerInterceptor {
  return (descriptor, call) => {
    const method = descriptor.path.slice(descriptor.path.lastIndexOf('/') + 1);
    let watches: CallWatch[] = [];
    let ended = false;
    const end = (outcome: CallEnd) => {
      if (ended) return;
      ended = true;
      endWatches(watches, outcome);
    };
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const begun = beginWatches(observers, { path: descriptor.path, metadata, deadline: callDeadlineMs(call) }, method);
            if (begun.refusal) {
              ended = true;
              call.sendStatus(begun.refusal);
              return;
            }
            watches = begun.watches;
            nextMetadata(metadata);
          },
          onReceiveMessage: (message: unknown, nextMessage) => {
            for (const watch of watches) watch.message?.(message);
            nextMessage(message);
          },
          // A call the client cancels may send no status: it ends here all the same.
          onCancel: () => end({ code: callDeadlineMs(call) <= Date.now() ? status.DEADLINE_EXCEEDED : status.CANCELLED, details: 'the call ended before its status was sent' }),
        }),
      sendStatus: (statusObject, next) => {
        // grpc-js answers a unary call whose stream ended before its request message with UNIMPLEMENTED
        // ("Received no request message"): that is a client that gave up, so the call ends as
        // DEADLINE_EXCEEDED or CANCELLED, which is also what the client itself saw.
        if (statusObject.code === status.UNIMPLEMENTED && statusObject.details?.startsWith(NO_REQUEST_MESSAGE)) {
          statusObject = callDeadlineMs(call) <= Date.now()
            ? { ...statusObject, code: status.DEADLINE_EXCEEDED, details: 'deadline passed before the request message arrived' }
            : { ...statusObject, code: status.CANCELLED, details: 'the client cancelled before sending its request message' };
        }
        end({ code: statusObject.code ?? status.UNKNOWN, details: statusObject.details ?? '' });
        next(statusObject);
      },
    });
  };
}
