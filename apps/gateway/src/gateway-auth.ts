import type { ServerSurfaceCall } from '@maas/rpc';
import type { ApiKeyAuthenticator, Scope } from '@maas/auth';

/** Checks a call's credentials for a scope; a no-op when auth is off. */
export class GatewayAuth {
  constructor(private readonly authenticator: ApiKeyAuthenticator | undefined) {}

  get enabled(): boolean {
    return this.authenticator !== undefined;
  }

  /** Throws UNAUTHENTICATED / PERMISSION_DENIED / RESOURCE_EXHAUSTED; returns the key id ('' when off). */
  authorize(call: ServerSurfaceCall, scope: Scope): string {
    if (!this.authenticator) return '';
    const value = call.metadata.get('authorization')[0];
    return this.authenticator.authorize(typeof value === 'string' ? value : value?.toString('utf8'), scope);
  }
}
