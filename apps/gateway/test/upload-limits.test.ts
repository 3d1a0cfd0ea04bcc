import { status, type ServiceError } from '@grpc/grpc-js';
import type { ModelVersion } from '@maas/proto';
import { mlpModel, waitFor } from '@maas/testing';
import { startStack, withKey, type Stack } from './stack-fixture';

describe('uploads through the gateway, per API key', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ maxUploadsPerKey: 2 });
  }, 60_000);
  afterAll(() => stack.stop());

  it('refuses a key more open uploads than GATEWAY_MAX_UPLOADS_PER_KEY, and frees the slot when one ends', async () => {
    const { registry } = stack.client(stack.keys.admin);
    await registry.createModel('capped');
    const open = (): { ended: Promise<ServiceError | ModelVersion>; cancel(): void } => {
      let call: { cancel(): void } | undefined;
      const ended = new Promise<ServiceError | ModelVersion>((resolve) => {
        const stream = registry.raw.uploadVersion(withKey(stack.keys.admin), (err, res) => resolve(err ?? res));
        stream.write({ payload: { $case: 'metadata', value: { model: 'capped', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] } } });
        call = stream;
      });
      return { ended, cancel: () => call!.cancel() };
    };
    const first = open();
    const second = open();
    const third = await open().ended;
    expect(third).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining('has 2 uploads open already (GATEWAY_MAX_UPLOADS_PER_KEY)') });
    first.cancel();
    second.cancel();
    expect(await first.ended).toMatchObject({ code: status.CANCELLED });
    await second.ended;
    // Once they have ended, the key's slots take a real upload again.
    await waitFor(async () => {
      const v = await registry.upload({ model: 'capped', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] }, [mlpModel()]).catch(() => undefined);
      return v?.version === 1;
    }, { timeoutMs: 5000, description: 'an upload once the slots are free' });
  });
});
