// Baseline B: a bare server whose Predict does nothing but decode the request
// and answer a fixed response of the real output's size, encoded afresh on
// every call as a server of the real thing must. Two transports:
//   grpc-js (default): grpc-js's Server, as a service written the usual way;
//   raw: Node's HTTP/2 server with gRPC framing and no per-call layers, the
//        lower floor (the transport our raw Predict routes are built on).
// Usage: noop-server.ts <output bytes> [grpc-js|raw]. Prints its port as JSON.
import { createServer, type ServerHttp2Stream } from 'node:http2';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { DataType, InferenceServiceService, type PredictResponse } from '@maas/proto';
import { endWithMessage, UnaryMessageReader } from '@maas/rpc';

const outputBytes = Number(process.argv[2] ?? '12');
const transport = process.argv[3] ?? 'grpc-js';
const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
const response: PredictResponse = {
  model: 'noop',
  version: 1,
  outputs: [{ name: 'output', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, outputBytes / 4], rawData: Buffer.alloc(outputBytes), stringData: [] }],
};
const predict = InferenceServiceService.predict;
const listening = (port: number) => process.stdout.write(`${JSON.stringify({ msg: 'listening', port, transport })}\n`);

function grpcJs(): () => void {
  const unimplemented = (_call: unknown, callback: (err: Error) => void) => callback(new Error('not part of the baseline'));
  const server = new Server({ 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES, 'grpc.max_send_message_length': MAX_MESSAGE_BYTES });
  server.addService(InferenceServiceService, {
    predict: (_call: unknown, callback: (err: null, res: PredictResponse) => void) => callback(null, response),
    modelMetadata: unimplemented,
    loadModel: unimplemented,
    unloadModel: unimplemented,
    listLoaded: unimplemented,
  });
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    listening(port);
  });
  return () => server.tryShutdown(() => process.exit(0));
}

/** Every stream is a Predict: read the one message, decode it, answer the encoded response and OK trailers. */
function raw(): () => void {
  const words = { compressed: 'compressed requests are not part of the baseline', extra: 'more than one request message' };
  // No cap on a session's buffered memory, as grpc-js's server sets it: Node's default (10 MB) refuses streams
  // (RESOURCE_EXHAUSTED at the client) once 32 calls of PP-OCRv4's bytes are out on one connection.
  const server = createServer({ maxSessionMemory: Number.MAX_SAFE_INTEGER });
  server.on('stream', (stream: ServerHttp2Stream) => {
    const reader = new UnaryMessageReader(MAX_MESSAGE_BYTES, words);
    let failed = false;
    stream.on('data', (chunk: Buffer) => {
      if (!failed && reader.push(chunk)) failed = true;
    });
    stream.on('end', () => {
      if (failed || !reader.complete) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto', 'grpc-status': '13', 'grpc-message': 'bad request framing' }, { endStream: true });
        return;
      }
      // The same (de)serialisers grpc-js calls for the other transport: the two differ in transport only.
      predict.requestDeserialize(reader.message());
      stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': '' }));
      endWithMessage(stream, predict.responseSerialize(response));
    });
    stream.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    listening(typeof address === 'object' && address ? address.port : 0);
  });
  return () => server.close(() => process.exit(0));
}

if (transport !== 'grpc-js' && transport !== 'raw') {
  process.stderr.write(`noop-server: transport is grpc-js or raw, not ${transport}\n`);
  process.exit(2);
}
const stop = transport === 'raw' ? raw() : grpcJs();
process.on('SIGTERM', stop);
