import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { credentials, makeGenericClientConstructor, type Client } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

/**
 * A test double of the Consul agent HTTP API, for the endpoints MaaS uses and
 * with the agent's semantics (agent/agent_endpoint.go, agent/checks, the
 * config defaults), no more lenient than the real thing:
 * - `PUT /v1/agent/service/register` with `Check`/`Checks` (GRPC with
 *   Interval/Timeout, TTL, DeregisterCriticalServiceAfter). GRPC checks are
 *   really executed against the target's `grpc.health.v1`. A new check starts
 *   critical and its first probe runs after a random stagger of up to one
 *   interval; intervals below 1 s run at 1 s; DeregisterCriticalServiceAfter
 *   below 1 minute is 1 minute, and the reaper looks every 30 s (tests move
 *   the double's clock with `advanceClock`). Registering an ID again keeps its
 *   checks' last status. A service address of 0.0.0.0 or :: is a 400.
 * - `PUT /v1/agent/service/deregister/:id` (an unknown ID is a 200, as in
 *   Consul), `PUT /v1/agent/check/{pass,warn,fail}/:id` (TTL checks only).
 * - ACLs when started with `aclToken`: every call without that token in
 *   `X-Consul-Token` (or `?token=`) is a 403.
 * - `GET /v1/health/service/:name` with `passing`, and blocking queries:
 *   `index` + `wait` hold the request until the result's index moves past
 *   `index` or the wait elapses; every answer carries `X-Consul-Index`, which
 *   never goes backwards.
 * - `GET /v1/agent/services`, `GET /v1/status/leader`.
 * Not for production code: only tests import it.
 */

type CheckStatus = 'passing' | 'warning' | 'critical';

interface CheckState {
  CheckID: string;
  Name: string;
  ServiceID: string;
  ServiceName: string;
  Status: CheckStatus;
  Output: string;
  /** grpc target, when a GRPC check. */
  grpc?: string;
  intervalMs?: number;
  timeoutMs?: number;
  ttlMs?: number;
  deregisterAfterMs?: number;
  criticalSince?: number;
  timer?: NodeJS.Timeout;
  ttlTimer?: NodeJS.Timeout;
  client?: Client;
}

interface ServiceState {
  ID: string;
  Service: string;
  Tags: string[];
  Address: string;
  Port: number;
  Meta: Record<string, string>;
  /** Index at which this service's health result last changed. */
  modifyIndex: number;
  checks: CheckState[];
}

/** A running Consul double. */
export interface ConsulDouble {
  /** `127.0.0.1:port`, for CONSUL_HTTP_ADDR. */
  address: string;
  url: string;
  port: number;
  /** Registered services by ID. */
  services(): Map<string, { name: string; address: string; port: number; tags: string[]; meta: Record<string, string>; status: CheckStatus }>;
  /** Sets the status of a TTL check (by check ID, or every TTL check of a service ID), as `/v1/agent/check/...` does; a gRPC check cannot be set. */
  setCheckStatus(id: string, status: CheckStatus): void;
  /** Moves the double's clock on by `ms` (critical-since times age by it) and runs the reaper at once. */
  advanceClock(ms: number): void;
  /** Forgets a registration without the service asking, as an agent restarted with an empty data dir does. */
  forget(id: string): void;
  /** The current raft-like index. */
  index(): number;
  /** Number of HTTP requests served per path prefix, for assertions. */
  requests(): Record<string, number>;
  stop(): Promise<void>;
}

/** Parses Consul durations such as `10s`, `500ms`, `1m`, `1h30m`. */
export function parseConsulDuration(text: string): number {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let consumed = 0;
  for (const match of text.matchAll(re)) {
    total += Number(match[1]) * unit[match[2]];
    consumed += match[0].length;
  }
  if (consumed !== text.length || text.length === 0) throw new Error(`time: invalid duration "${text}"`);
  return total;
}

const HealthClient = makeGenericClientConstructor(healthService, 'Health');

/** Starts the double on a loopback port (a free one unless given, e.g. to restart on the same port). */
export async function startConsulDouble(options: { port?: number; aclToken?: string } = {}): Promise<ConsulDouble> {
  const services = new Map<string, ServiceState>();
  const waiters = new Set<() => void>();
  const counts: Record<string, number> = {};
  let index = 1;
  /** What the double's clock is ahead of the real one (advanceClock). */
  let skew = 0;
  const now = () => Date.now() + skew;

  const bump = (service?: ServiceState) => {
    index += 1;
    if (service) service.modifyIndex = index;
    for (const wake of [...waiters]) wake();
  };

  const aggregate = (svc: ServiceState): CheckStatus => {
    if (svc.checks.some((c) => c.Status === 'critical')) return 'critical';
    if (svc.checks.some((c) => c.Status === 'warning')) return 'warning';
    return 'passing';
  };

  const setStatus = (check: CheckState, status: CheckStatus, output: string) => {
    const svc = services.get(check.ServiceID);
    if (!svc || check.Status === status) {
      check.Output = output;
      return;
    }
    check.Status = status;
    check.Output = output;
    check.criticalSince = status === 'critical' ? now() : undefined;
    bump(svc);
  };

  const stopCheck = (check: CheckState) => {
    clearTimeout(check.timer);
    clearInterval(check.timer);
    clearTimeout(check.ttlTimer);
    check.client?.close();
  };

  const deregister = (id: string) => {
    const svc = services.get(id);
    if (!svc) return false;
    svc.checks.forEach(stopCheck);
    services.delete(id);
    bump();
    return true;
  };
  /** The statuses of the checks of a service being registered again, for its new checks to keep. */
  const lastStatus = new Map<string, CheckStatus>();

  const runGrpcCheck = (check: CheckState) => {
    const client = check.client!;
    const deadline = new Date(Date.now() + (check.timeoutMs ?? 10_000));
    (client as unknown as { check: (req: object, opts: object, cb: (err: Error | null, res?: { status: string | number }) => void) => void }).check(
      { service: '' },
      { deadline },
      (err, res) => {
        if (!services.has(check.ServiceID)) return;
        if (err) return setStatus(check, 'critical', `gRPC health check failed: ${err.message}`);
        const serving = res?.status === 'SERVING' || res?.status === 1;
        setStatus(check, serving ? 'passing' : 'critical', `gRPC health status ${String(res?.status)}`);
      },
    );
  };

  const armTtl = (check: CheckState) => {
    clearTimeout(check.ttlTimer);
    check.ttlTimer = setTimeout(() => setStatus(check, 'critical', 'TTL expired'), check.ttlMs);
  };

  // Consul's reaper (check_reap_interval, 30 s) removes services critical for longer than their
  // DeregisterCriticalServiceAfter.
  const reap = () => {
    for (const svc of [...services.values()]) {
      for (const check of svc.checks) {
        if (check.Status === 'critical' && check.deregisterAfterMs !== undefined && check.criticalSince !== undefined) {
          if (now() - check.criticalSince >= check.deregisterAfterMs) deregister(svc.ID);
        }
      }
    }
  };
  const reaper = setInterval(reap, 30_000);
  reaper.unref();

  const makeCheck = (svc: ServiceState, def: Record<string, unknown>, n: number): CheckState => {
    const check: CheckState = {
      CheckID: String(def.CheckID ?? (n === 0 ? `service:${svc.ID}` : `service:${svc.ID}:${n + 1}`)),
      Name: String(def.Name ?? `Service '${svc.Service}' check`),
      ServiceID: svc.ID,
      ServiceName: svc.Service,
      // Consul starts new checks critical unless Status says otherwise.
      Status: (def.Status as CheckStatus) ?? 'critical',
      Output: '',
    };
    // A check registered again keeps the status it had (Consul does not reset it to critical).
    const previous = lastStatus.get(check.CheckID);
    if (previous && def.Status === undefined) check.Status = previous;
    // check_deregister_interval_min: anything shorter than a minute is a minute.
    if (def.DeregisterCriticalServiceAfter) check.deregisterAfterMs = Math.max(60_000, parseConsulDuration(String(def.DeregisterCriticalServiceAfter)));
    if (check.Status === 'critical') check.criticalSince = now();
    if (def.GRPC) {
      if (!def.Interval) throw new Error('Interval is required for GRPC checks');
      check.grpc = String(def.GRPC);
      // checks.MinInterval: shorter intervals run at 1 s.
      check.intervalMs = Math.max(1000, parseConsulDuration(String(def.Interval)));
      check.timeoutMs = def.Timeout ? parseConsulDuration(String(def.Timeout)) : 10_000;
      // GRPCUseTLS with TLSSkipVerify, as Consul does: TLS without verifying the certificate.
      const tls = def.GRPCUseTLS === true ? credentials.createSsl(null, null, null, { rejectUnauthorized: def.TLSSkipVerify !== true }) : credentials.createInsecure();
      check.client = new HealthClient(check.grpc, tls);
    } else if (def.TTL) {
      check.ttlMs = parseConsulDuration(String(def.TTL));
    } else {
      throw new Error('Invalid check: TTL or Script/Args/HTTP/TCP/GRPC + Interval must be specified');
    }
    return check;
  };

  const handleRegister = (body: Record<string, unknown>, res: ServerResponse) => {
    if (!body.Name) return reply(res, 400, 'Missing service name');
    const address = String(body.Address ?? '').replace(/^\[|\]$/g, '');
    if (address === '0.0.0.0' || address === '::') return reply(res, 400, 'Invalid service address');
    const id = String(body.ID ?? body.Name);
    const existing = services.get(id);
    if (existing) {
      for (const check of existing.checks) lastStatus.set(check.CheckID, check.Status);
      existing.checks.forEach(stopCheck);
    }
    const svc: ServiceState = {
      ID: id,
      Service: String(body.Name),
      Tags: (body.Tags as string[]) ?? [],
      Address: String(body.Address ?? ''),
      Port: Number(body.Port ?? 0),
      Meta: (body.Meta as Record<string, string>) ?? {},
      modifyIndex: 0,
      checks: [],
    };
    const defs = [...(body.Check ? [body.Check] : []), ...((body.Checks as unknown[]) ?? [])] as Array<Record<string, unknown>>;
    try {
      svc.checks = defs.map((def, n) => makeCheck(svc, def, n));
    } catch (err) {
      return reply(res, 400, (err as Error).message);
    } finally {
      lastStatus.clear();
    }
    services.set(id, svc);
    bump(svc);
    for (const check of svc.checks) {
      if (check.grpc) {
        // Like Consul's CheckGRPC: the first probe after a random stagger of up to one interval.
        const first = setTimeout(() => {
          runGrpcCheck(check);
          check.timer = setInterval(() => runGrpcCheck(check), check.intervalMs);
        }, Math.random() * check.intervalMs!);
        check.timer = first as unknown as NodeJS.Timeout;
      }
      if (check.ttlMs) armTtl(check);
    }
    reply(res, 200, '');
  };

  const healthEntries = (name: string, passingOnly: boolean) =>
    [...services.values()]
      .filter((svc) => svc.Service === name && (!passingOnly || aggregate(svc) === 'passing'))
      .map((svc) => ({
        Node: { ID: 'double-node', Node: 'consul-double', Address: '127.0.0.1', Datacenter: 'dc1' },
        Service: { ID: svc.ID, Service: svc.Service, Tags: svc.Tags, Address: svc.Address, Port: svc.Port, Meta: svc.Meta },
        Checks: [
          { Node: 'consul-double', CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing', ServiceID: '', ServiceName: '' },
          ...svc.checks.map((c) => ({ Node: 'consul-double', CheckID: c.CheckID, Name: c.Name, Status: c.Status, Output: c.Output, ServiceID: c.ServiceID, ServiceName: c.ServiceName })),
        ],
      }));

  const handleHealth = (name: string, query: URLSearchParams, res: ServerResponse) => {
    const passing = query.has('passing') && query.get('passing') !== 'false';
    const resultIndex = () => Math.max(1, index);
    const answer = () => {
      res.setHeader('X-Consul-Index', String(resultIndex()));
      res.setHeader('X-Consul-KnownLeader', 'true');
      res.setHeader('X-Consul-LastContact', '0');
      reply(res, 200, JSON.stringify(healthEntries(name, passing)), 'application/json');
    };
    const wanted = query.get('index');
    if (!wanted) return answer();
    const wantedIndex = Number(wanted);
    if (!Number.isInteger(wantedIndex) || wantedIndex < 0) return reply(res, 400, `Invalid index: "${wanted}"`);
    let waitMs = 5 * 60_000;
    if (query.get('wait')) {
      try {
        waitMs = Math.min(parseConsulDuration(query.get('wait')!), 10 * 60_000);
      } catch (err) {
        return reply(res, 400, `Invalid wait time: ${(err as Error).message}`);
      }
    }
    if (resultIndex() > wantedIndex) return answer();
    const before = JSON.stringify(healthEntries(name, passing));
    const done = () => {
      clearTimeout(timer);
      waiters.delete(onChange);
      answer();
    };
    // Like Consul, wake only when this query's result changed, not on any index bump.
    const onChange = () => {
      if (JSON.stringify(healthEntries(name, passing)) !== before) done();
    };
    const timer = setTimeout(done, waitMs);
    waiters.add(onChange);
    // The response closing (not the request: that closes once its body is read) means the client left.
    res.on('close', () => {
      clearTimeout(timer);
      waiters.delete(onChange);
    });
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://consul');
    const path = url.pathname;
    const prefix = path.split('/').slice(0, 4).join('/');
    counts[prefix] = (counts[prefix] ?? 0) + 1;
    if (options.aclToken !== undefined && !path.startsWith('/v1/status/')) {
      const given = req.headers['x-consul-token'] ?? url.searchParams.get('token') ?? '';
      if (given !== options.aclToken) {
        req.resume();
        return reply(res, 403, given ? 'ACL not found' : 'Permission denied: anonymous token lacks permission');
      }
    }
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (raw += chunk));
    req.on('end', () => {
      let m: RegExpExecArray | null;
      if (req.method === 'PUT' && path === '/v1/agent/service/register') {
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(raw || '{}') as Record<string, unknown>;
        } catch (err) {
          return reply(res, 400, `Request decode failed: ${(err as Error).message}`);
        }
        return handleRegister(body, res);
      }
      if (req.method === 'PUT' && (m = /^\/v1\/agent\/service\/deregister\/(.+)$/.exec(path))) {
        // Consul answers 200 for an ID it does not hold.
        deregister(decodeURIComponent(m[1]));
        return reply(res, 200, '');
      }
      if (req.method === 'PUT' && (m = /^\/v1\/agent\/check\/(pass|warn|fail)\/(.+)$/.exec(path))) {
        const id = decodeURIComponent(m[2]);
        const check = [...services.values()].flatMap((s) => s.checks).find((c) => c.CheckID === id);
        if (!check) return reply(res, 404, `Unknown check ID "${id}". Ensure that the check ID is passed, not the check name.`);
        if (!check.ttlMs) return reply(res, 500, `CheckID "${id}" does not have associated TTL`);
        const status: CheckStatus = m[1] === 'pass' ? 'passing' : m[1] === 'warn' ? 'warning' : 'critical';
        setStatus(check, status, url.searchParams.get('note') ?? '');
        armTtl(check);
        return reply(res, 200, '');
      }
      if (req.method === 'GET' && (m = /^\/v1\/health\/service\/(.+)$/.exec(path))) {
        return handleHealth(decodeURIComponent(m[1]), url.searchParams, res);
      }
      if (req.method === 'GET' && path === '/v1/agent/services') {
        const out = Object.fromEntries(
          [...services.values()].map((s) => [s.ID, { ID: s.ID, Service: s.Service, Tags: s.Tags, Address: s.Address, Port: s.Port, Meta: s.Meta }]),
        );
        return reply(res, 200, JSON.stringify(out), 'application/json');
      }
      if (req.method === 'GET' && path === '/v1/status/leader') return reply(res, 200, '"127.0.0.1:8300"', 'application/json');
      reply(res, 404, `Unknown endpoint ${req.method} ${path}`);
    });
  });

  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    services: () =>
      new Map(
        [...services.values()].map((s) => [s.ID, { name: s.Service, address: s.Address, port: s.Port, tags: s.Tags, meta: s.Meta, status: aggregate(s) }]),
      ),
    setCheckStatus(id, status) {
      const svc = services.get(id);
      const checks = svc ? svc.checks : [...services.values()].flatMap((s) => s.checks).filter((c) => c.CheckID === id);
      if (checks.some((c) => !c.ttlMs)) throw new Error(`check of "${id}" is not a TTL check: Consul runs it itself, and so does the double`);
      for (const check of checks) setStatus(check, status, 'set by test');
    },
    advanceClock(ms) {
      skew += ms;
      reap();
    },
    forget(id) {
      deregister(id);
    },
    index: () => index,
    requests: () => ({ ...counts }),
    async stop() {
      clearInterval(reaper);
      for (const svc of services.values()) svc.checks.forEach(stopCheck);
      for (const wake of [...waiters]) wake();
      waiters.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function reply(res: ServerResponse, code: number, body: string, type = 'text/plain; charset=utf-8'): void {
  if (res.headersSent) return;
  res.writeHead(code, { 'content-type': type });
  res.end(body);
}
