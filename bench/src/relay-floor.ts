// Baseline for T2a: the least a relaying gateway can do. Node's HTTP/2 server with gRPC framing takes each
// call's one message and sends its bytes, unchanged, to an inference node's frames port (the hop the gateway
// takes, @maas/rpc's FrameUnaryClient), then writes the answer's bytes back with OK trailers. No resolving,
// routing, observers or bookkeeping: what is left is the transport on both sides and the node's own time.
// The request must name a version and its sha256 (the node then needs nothing else).
// Usage: relay-floor.ts <node host> <node frames port>. Prints its port as JSON.
import { createServer, type ServerHttp2Stream } from 'node:http2';
import { endWithMessage, FrameUnaryClient, UnaryMessageReader } from '@maas/rpc';

const [host, framesPort] = [process.argv[2], Number(process.argv[3])];
if (!host || !Number.isInteger(framesPort) || framesPort <= 0) {
  process.stderr.write('relay-floor: usage relay-floor.ts <node host> <node frames port>\n');
  process.exit(2);
}
const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
const PREDICT = '/maas.v1.InferenceService/Predict';
const node = new FrameUnaryClient(host, framesPort, { maxReceiveMessageBytes: MAX_MESSAGE_BYTES, maxSendMessageBytes: MAX_MESSAGE_BYTES });
const words = { compressed: 'compressed requests are not part of the baseline', extra: 'more than one request message' };

const fail = (stream: ServerHttp2Stream, code: number, message: string) => {
  if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto', 'grpc-status': String(code), 'grpc-message': encodeURI(message) }, { endStream: true });
};

// No cap on a session's buffered memory, as in noop-server.ts.
const server = createServer({ maxSessionMemory: Number.MAX_SAFE_INTEGER });
server.on('stream', (stream: ServerHttp2Stream) => {
  const reader = new UnaryMessageReader(MAX_MESSAGE_BYTES, words);
  let problem = false;
  stream.on('data', (chunk: Buffer) => {
    if (!problem && reader.push(chunk)) problem = true;
  });
  stream.on('end', () => {
    if (problem || !reader.complete) return fail(stream, 13, 'bad request framing');
    node.call(PREDICT, reader.message(), { timeoutMs: 30_000 }).then(
      (answer) => {
        if (stream.destroyed) return;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': '' }));
        endWithMessage(stream, answer.pieces);
      },
      (err: { code?: number; details?: string; message?: string }) => fail(stream, err.code ?? 13, err.details ?? err.message ?? 'relay failed'),
    );
  });
  stream.on('error', () => undefined);
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: typeof address === 'object' && address ? address.port : 0 })}\n`);
});
process.on('SIGTERM', () => {
  node.close();
  server.close(() => process.exit(0));
});
