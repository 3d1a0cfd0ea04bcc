import { readFileSync } from 'node:fs';
import { credentials, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';

/** TLS material of a service, as file paths (PEM). Empty strings mean unset. */
export interface TlsFiles {
  /** This service's certificate chain; with `keyFile`, turns TLS on for its server. */
  certFile: string;
  keyFile: string;
  /** CA bundle that verifies peers: servers this service dials, and client certificates when required. */
  caFile: string;
  /** `require`: the server accepts only clients presenting a certificate signed by `caFile` (mTLS). */
  clientAuth: 'none' | 'require';
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read the ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** The TLS fields every service's configuration has (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE, TLS_CLIENT_AUTH). */
export interface TlsConfig {
  tlsCertFile: string;
  tlsKeyFile: string;
  tlsCaFile: string;
  tlsClientAuth: 'none' | 'require';
}

/** The {@link TlsFiles} a service's configuration names. */
export function tlsFilesOf(config: TlsConfig): TlsFiles {
  return { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, caFile: config.tlsCaFile, clientAuth: config.tlsClientAuth };
}

/** Whether the files turn TLS on for the server side. */
export function tlsEnabled(files: TlsFiles): boolean {
  return Boolean(files.certFile || files.keyFile);
}

/** Checks the combination is complete before anything starts, naming what is missing. */
export function checkTlsFiles(files: TlsFiles): void {
  if (Boolean(files.certFile) !== Boolean(files.keyFile)) throw new Error('TLS needs both TLS_CERT_FILE and TLS_KEY_FILE (got only one)');
  if (files.clientAuth === 'require' && !files.caFile) throw new Error('TLS_CLIENT_AUTH=require needs TLS_CA_FILE to verify client certificates');
  if (files.clientAuth === 'require' && !files.certFile) throw new Error('TLS_CLIENT_AUTH=require needs TLS_CERT_FILE and TLS_KEY_FILE (a TLS server)');
}

/** Server credentials: insecure without a certificate, TLS with one, mTLS when client certificates are required. */
export function serverCredentials(files: TlsFiles): ServerCredentials {
  checkTlsFiles(files);
  if (!tlsEnabled(files)) return ServerCredentials.createInsecure();
  const ca = files.caFile ? read(files.caFile, 'TLS CA file') : null;
  return ServerCredentials.createSsl(
    ca,
    [{ cert_chain: read(files.certFile, 'TLS certificate file'), private_key: read(files.keyFile, 'TLS key file') }],
    files.clientAuth === 'require',
  );
}

/**
 * Credentials for dialing another MaaS service: TLS verified against
 * `caFile` when one is set (presenting this service's own certificate, for
 * servers that require client certificates), else insecure.
 */
export function clientCredentials(files: TlsFiles): ChannelCredentials {
  if (!files.caFile) return credentials.createInsecure();
  const own = files.certFile && files.keyFile ? { key: read(files.keyFile, 'TLS key file'), cert: read(files.certFile, 'TLS certificate file') } : undefined;
  return credentials.createSsl(read(files.caFile, 'TLS CA file'), own?.key ?? null, own?.cert ?? null);
}

/** The same TLS material as options of a Node HTTPS server (the REST endpoint beside a gRPC one), or undefined without TLS. */
export function httpsOptionsOf(files: TlsFiles): { cert: Buffer; key: Buffer; ca?: Buffer; requestCert: boolean } | undefined {
  checkTlsFiles(files);
  if (!tlsEnabled(files)) return undefined;
  return {
    cert: read(files.certFile, 'TLS certificate file'),
    key: read(files.keyFile, 'TLS key file'),
    ca: files.caFile ? read(files.caFile, 'TLS CA file') : undefined,
    requestCert: files.clientAuth === 'require',
  };
}
