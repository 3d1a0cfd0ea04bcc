// Baseline B: a bare grpc-js server whose Predict does nothing but answer a
// fixed response of the real output's size. Prints its port as JSON.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { DataType, InferenceServiceService, type PredictResponse } from '@maas/proto';

const outputBytes = Number(process.argv[2] ?? '12');
const response: PredictResponse = {
  model: 'noop',
  version: 1,
  outputs: [{ name: 'output', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, outputBytes / 4], rawData: Buffer.alloc(outputBytes), stringData: [] }],
};
const unimplemented = (_call: unknown, callback: (err: Error) => void) => callback(new Error('not part of the baseline'));
const server = new Server({ 'grpc.max_receive_message_length': 256 * 1024 * 1024, 'grpc.max_send_message_length': 256 * 1024 * 1024 });
server.addService(InferenceServiceService, {
  predict: (_call: unknown, callback: (err: null, res: PredictResponse) => void) => callback(null, response),
  modelMetadata: unimplemented,
  loadModel: unimplemented,
  unloadModel: unimplemented,
  listLoaded: unimplemented,
});
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
