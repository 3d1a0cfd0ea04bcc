import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { DataType, type Tensor } from '@maas/proto';
import { UnavailableError } from '@maas/rpc';
import { fromOrtTensor, toOrtTensor } from '@maas/tensor';

/** Runs stacked requests on onnxruntime sessions of one model version. */
export interface SessionRunner {
  /** Where runs happen: on the event loop's thread, or on threads of their own. */
  readonly where: 'main' | 'thread';
  /** Sessions (model instances) that can run at the same time. */
  readonly instances: number;
  /** Runs in progress on each instance, in instance order. */
  busy(): number[];
  run(inputs: Tensor[], outputNames: string[]): Promise<RunOutput>;
  release(): Promise<void>;
}

/** A run's outputs, and the CPU time it took where the session's thread could measure it. */
export interface RunOutput {
  outputs: Tensor[];
  /** CPU ms of the session thread over the run (session threads on Linux, tick-grained: a short run may read 0); undefined elsewhere. */
  cpuMs?: number;
}

type SessionOptions = InferenceSession.SessionOptions;

/**
 * onnxruntime-node runs a session synchronously on the calling thread: cheap
 * for small models (no hand-off), but the event loop stops for the whole run.
 */
class MainThreadSession implements SessionRunner {
  readonly where = 'main' as const;
  readonly instances = 1;
  private running = 0;

  constructor(private readonly session: InferenceSession) {}

  busy(): number[] {
    return [this.running];
  }

  async run(inputs: Tensor[], outputNames: string[]): Promise<RunOutput> {
    const feeds = Object.fromEntries(inputs.map((t) => [t.name, toOrtTensor(t)]));
    this.running += 1;
    try {
      const results = await this.session.run(feeds, outputNames);
      return { outputs: outputNames.map((name) => fromOrtTensor(name, results[name])) };
    } finally {
      this.running -= 1;
    }
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** A tensor crossing the thread boundary (see session-thread.cjs). */
interface Packed {
  name: string;
  type: OrtTensor.Type;
  dims: readonly number[];
  data: OrtTensor.DataType;
}

type FromThread =
  | { kind: 'ready' }
  | { kind: 'failed'; message: string }
  | { kind: 'result'; id: number; outputs: Packed[]; cpuMs?: number }
  | { kind: 'error'; id: number; message: string }
  | { kind: 'released' };

/**
 * The session on a worker thread of its own: the event loop keeps receiving
 * and answering requests while a run is in progress, at the price of one
 * copy of the inputs and outputs and a thread hand-off per run.
 */
class ThreadSession implements SessionRunner {
  readonly where = 'thread' as const;
  readonly instances = 1;
  private readonly pending = new Map<number, { resolve(output: RunOutput): void; reject(err: unknown): void }>();
  private nextId = 1;
  private gone?: Error;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (message: FromThread) => {
      if (message.kind !== 'result' && message.kind !== 'error') return;
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.kind === 'error') waiter.reject(new Error(message.message));
      else waiter.resolve({ outputs: message.outputs.map((t) => fromOrtTensor(t.name, new OrtTensor(t.type, t.data as never, t.dims))), cpuMs: message.cpuMs });
    });
    const fail = (why: string) => {
      this.gone = new UnavailableError(`the session thread of this model version stopped (${why}); retry on another node`);
      for (const waiter of this.pending.values()) waiter.reject(this.gone);
      this.pending.clear();
    };
    worker.on('error', (err) => fail(err.message));
    worker.on('exit', (code) => fail(`exit code ${code}`));
  }

  static open(path: string, options: SessionOptions): Promise<ThreadSession> {
    const worker = new Worker(join(__dirname, 'session-thread.cjs'), { workerData: { path, options } });
    return new Promise((resolve, reject) => {
      const onExit = (code: number) => reject(new Error(`session thread exited with code ${code} while loading ${path}`));
      worker.once('exit', onExit);
      worker.once('error', reject);
      worker.once('message', (message: FromThread) => {
        worker.off('exit', onExit);
        worker.off('error', reject);
        if (message.kind === 'ready') return resolve(new ThreadSession(worker));
        void worker.terminate();
        reject(new Error(message.kind === 'failed' ? message.message : `unexpected first message ${message.kind} from the session thread`));
      });
    });
  }

  /** Runs sent to the thread and not answered yet. */
  get inFlight(): number {
    return this.pending.size;
  }

  busy(): number[] {
    return [this.inFlight];
  }

  run(inputs: Tensor[], outputNames: string[]): Promise<RunOutput> {
    if (this.gone) return Promise.reject(this.gone);
    const transfer: ArrayBuffer[] = [];
    const feeds: Packed[] = inputs.map((t) => {
      // The request bytes are a view into a larger receive buffer, often at an offset the element type
      // cannot start at: copy them once into memory of their own (aligned), then move that copy.
      const own = t.dtype === DataType.DATA_TYPE_STRING ? t : { ...t, rawData: Buffer.from(new Uint8Array(t.rawData).buffer) };
      const ort = toOrtTensor(own);
      if (ort.type === 'string') return { name: t.name, type: ort.type, dims: ort.dims, data: ort.data };
      const data = ort.data as Exclude<OrtTensor.DataType, string[]>;
      transfer.push(data.buffer as ArrayBuffer);
      return { name: t.name, type: ort.type, dims: ort.dims, data };
    });
    const id = this.nextId++;
    return new Promise<RunOutput>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ kind: 'run', id, feeds, outputNames }, transfer);
    });
  }

  async release(): Promise<void> {
    if (this.gone) return;
    const released = new Promise<void>((resolve) => {
      this.worker.on('message', (message: FromThread) => message.kind === 'released' && resolve());
      this.worker.once('exit', () => resolve());
    });
    this.worker.postMessage({ kind: 'release' });
    await released;
    await this.worker.terminate();
  }
}

/**
 * Several instances of one model version, each a session on a thread of its
 * own with its own intra-op pool: runs go to the least busy instance, so
 * concurrent batches run side by side instead of splitting every operator
 * across threads that wait for each other.
 */
class SessionPool implements SessionRunner {
  readonly where = 'thread' as const;

  constructor(private readonly sessions: ThreadSession[]) {}

  get instances(): number {
    return this.sessions.length;
  }

  busy(): number[] {
    return this.sessions.map((s) => s.inFlight);
  }

  run(inputs: Tensor[], outputNames: string[]): Promise<RunOutput> {
    let pick = this.sessions[0];
    for (const s of this.sessions) if (s.inFlight < pick.inFlight) pick = s;
    return pick.run(inputs, outputNames);
  }

  async release(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.release()));
  }
}

/** Where and how many times to open a model version's session. */
export interface SessionPlacement {
  /** Run on a worker thread rather than the event loop's thread. */
  thread: boolean;
  /** Sessions that run side by side; more than one always means threads. @default 1 */
  instances?: number;
}

/**
 * Opens a model version's session on the event loop's thread, on a worker
 * thread of its own, or as several instances on one thread each.
 */
export async function openSession(path: string, options: SessionOptions, placement: SessionPlacement): Promise<SessionRunner> {
  const instances = Math.max(1, placement.instances ?? 1);
  if (instances > 1) {
    const opened = await Promise.allSettled(Array.from({ length: instances }, () => ThreadSession.open(path, options)));
    const sessions = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    const failed = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) {
      await Promise.all(sessions.map((s) => s.release()));
      throw failed.reason;
    }
    return new SessionPool(sessions);
  }
  if (placement.thread) return ThreadSession.open(path, options);
  return new MainThreadSession(await InferenceSession.create(path, options));
}
