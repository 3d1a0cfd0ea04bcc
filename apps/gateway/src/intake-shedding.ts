import { ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';
import { callDeadlineMs } from '@maas/rpc';
import type { Admission } from './admission';

/** The key under which the gateway as a whole is admitted (gRPC and REST inference calls alike). */
export const GATEWAY_ADMISSION_KEY = 'gateway';
const GATEWAY = GATEWAY_ADMISSION_KEY;

/**
 * Refuses inference calls while the gateway as a whole is past what it can
 * answer before their deadlines, at the headers: before the request message
 * (184 KB for an image model) has been received and decoded, so refusing costs
 * next to nothing and the client stops sending. The per-version admission
 * after decoding stays the precise one; this is the cheap outer gate.
 */
export function intakeShedding(admission: Admission, methods: ReadonlySet<string>): ServerInterceptor {
  return (descriptor, call) => {
    if (!methods.has(descriptor.path)) return new ServerInterceptingCall(call);
    let admitted = false;
    const settle = (answered: boolean) => {
      if (admitted) admission.done(GATEWAY, answered);
      admitted = false;
    };
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            try {
              admission.admit(GATEWAY, callDeadlineMs(call));
              admitted = true;
            } catch (err) {
              call.sendStatus({ code: status.RESOURCE_EXHAUSTED, details: (err as Error).message, metadata: null });
              return;
            }
            nextMetadata(metadata);
          },
          // A call the client cancels sends no status: it must leave the count all the same.
          onCancel: () => settle(false),
        }),
      sendStatus: (statusObject, next) => {
        settle(statusObject.code === status.OK);
        next(statusObject);
      },
    });
  };
}
