import { status } from '@grpc/grpc-js';
import type { CallObserver } from '@maas/rpc';
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
export function intakeShedding(admission: Admission, methods: ReadonlySet<string>): CallObserver {
  return {
    begin({ path, deadline }) {
      if (!methods.has(path)) return undefined;
      // Throws RESOURCE_EXHAUSTED, which refuses the call.
      admission.admit(GATEWAY, deadline);
      // A call the client cancels ends too: it leaves the count all the same.
      return { end: ({ code }) => admission.done(GATEWAY, code === status.OK) };
    },
  };
}
