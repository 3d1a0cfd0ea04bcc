import type { Discovery, ServiceInstance } from '@maas/discovery';
import { decodePredictRequest, decodePredictResponse, encodePredictResponse, InferenceServiceWire, type PredictRequest } from '@maas/proto';
import { FRAMES_HEADER, FrameServer, GrpcServer, MAX_MESSAGE_BYTES } from '@maas/rpc';
import { freePort, waitFor } from '@maas/testing';
import { NodePool, predictOnNode } from './node-pool';

const PREDICT_PATH = InferenceServiceWire.predict.path;

/** A discovery whose answers the test gives. */
function scriptedDiscovery(): Discovery & { say(instances: ServiceInstance[]): void } {
  let listener: ((instances: ServiceInstance[]) => void) | undefined;
  return {
    instances: () => [],
    watch: (_service, l) => {
      listener = l;
      return () => (listener = undefined);
    },
    ready: async () => [],
    shutdown: async () => undefined,
    say: (instances) => listener?.(instances),
  };
}

const node = (id: string, port: number): ServiceInstance => ({ id, address: `127.0.0.1:${port}`, host: '127.0.0.1', port, tags: [], meta: {} });

describe('NodePool when discovery suddenly lists no node', () => {
  it('keeps the known nodes for the grace, then believes it', async () => {
    const discovery = scriptedDiscovery();
    const pool = new NodePool(discovery, { emptyGraceMs: 300 });
    try {
      discovery.say([node('a', 1), node('b', 2)]);
      discovery.say([]);
      expect(pool.all().map((n) => n.instance.id)).toEqual(['a', 'b']);
      await waitFor(() => pool.all().length === 0, { timeoutMs: 5000, description: 'the empty set after the grace' });
    } finally {
      await pool.shutdown();
    }
  });

  it('takes the nodes that register again during the grace, and an empty answer at once with no grace', async () => {
    const discovery = scriptedDiscovery();
    const pool = new NodePool(discovery, { emptyGraceMs: 60_000 });
    const strict = scriptedDiscovery();
    const believing = new NodePool(strict, { emptyGraceMs: 0 });
    try {
      discovery.say([node('a', 1), node('b', 2)]);
      discovery.say([]);
      discovery.say([node('b', 2)]);
      expect(pool.all().map((n) => n.instance.id)).toEqual(['b']);
      strict.say([node('a', 1)]);
      strict.say([]);
      expect(believing.all()).toEqual([]);
    } finally {
      await pool.shutdown();
      await believing.shutdown();
    }
  });
});

describe('NodePool moving Predicts to a node\'s frames port', () => {
  const closers: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  /**
   * A node's Predict on HTTP/2 (the raw route) and, unless `framesOff`, on a
   * frames server; its answers offer `offer(framesPort, grpcAddress)`. The
   * answer names the transport that carried it.
   */
  async function fakeNode(offer: (framesPort: number, address: string) => string) {
    const calls = { http2: 0, frames: 0 };
    const answer = (via: 'http2' | 'frames') => async (request: PredictRequest) => {
      calls[via] += 1;
      return encodePredictResponse({ model: request.model, version: 1, outputs: [] });
    };
    const frames = new FrameServer({ maxReceiveMessageBytes: MAX_MESSAGE_BYTES, maxSendMessageBytes: MAX_MESSAGE_BYTES });
    frames.add({ path: PREDICT_PATH, decode: decodePredictRequest, handle: answer('frames') });
    const framesPort = await frames.start();
    const grpc = new GrpcServer({});
    const route = { path: PREDICT_PATH, decode: decodePredictRequest, handle: answer('http2'), headers: {} as Record<string, string> };
    grpc.addRawUnary(route);
    const port = await grpc.start();
    route.headers = { [FRAMES_HEADER]: offer(framesPort, `127.0.0.1:${port}`) };
    closers.push(() => grpc.shutdown(100));
    closers.push(() => frames.shutdown(100));
    return { port, frames, calls };
  }

  const request: PredictRequest = { model: 'm', version: 1, alias: '', inputs: [], outputNames: [], sha256: '' };

  async function poolOf(port: number) {
    const discovery = scriptedDiscovery();
    const pool = new NodePool(discovery, { rawClient: true });
    closers.push(() => pool.shutdown());
    discovery.say([node('a', port)]);
    return pool.get('a')!;
  }

  it('after the first answer, when the node offers its frames port to the address it was dialled at', async () => {
    const { port, calls } = await fakeNode((framesPort, address) => `${framesPort}@${address}`);
    const handle = await poolOf(port);
    // The offer opens a connection; calls go there once it is made, never waiting for it.
    expect(decodePredictResponse((await predictOnNode(handle, request, { timeoutMs: 5000 })).bytes).model).toBe('m');
    await waitFor(() => handle.frames?.usable, { description: 'frames connection made' });
    for (let i = 0; i < 4; i++) expect(decodePredictResponse((await predictOnNode(handle, request, { timeoutMs: 5000 })).bytes).model).toBe('m');
    expect(calls).toEqual({ http2: 1, frames: 4 });
  });

  it('never when the offer names another address (the pool dialled a proxy or a port mapping)', async () => {
    const { port, calls } = await fakeNode((framesPort) => `${framesPort}@127.0.0.1:1`);
    const handle = await poolOf(port);
    for (let i = 0; i < 3; i++) await predictOnNode(handle, request, { timeoutMs: 5000 });
    expect(calls).toEqual({ http2: 3, frames: 0 });
    expect(handle.frames).toBeUndefined();
  });

  it('keeps calls on HTTP/2, none failing, while the frames port cannot be reached', async () => {
    const closed = await freePort();
    const { port, calls } = await fakeNode((_framesPort, address) => `${closed}@${address}`);
    const handle = await poolOf(port);
    await predictOnNode(handle, request, { timeoutMs: 5000 });
    // The connection attempt fails in the background; calls meanwhile and after stay on HTTP/2.
    for (let i = 0; i < 20; i++) {
      expect(decodePredictResponse((await predictOnNode(handle, request, { timeoutMs: 5000 })).bytes).model).toBe('m');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(calls).toEqual({ http2: 21, frames: 0 });
    expect(handle.frames!.usable).toBe(false);
  });
});
