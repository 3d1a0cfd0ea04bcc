import { InferenceSession } from 'onnxruntime-node';
import { InvalidArgumentError } from '@maas/rpc';

/**
 * Loads the model in `path` with onnxruntime and releases it again, so that a
 * graph onnxruntime cannot run (unknown operators, type errors, bad weights)
 * is rejected at upload rather than at the first Predict.
 */
export async function verifyWithOnnxruntime(path: string): Promise<void> {
  let session: InferenceSession | undefined;
  try {
    session = await InferenceSession.create(path, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      logSeverityLevel: 3,
      graphOptimizationLevel: 'disabled',
    });
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0];
    throw new InvalidArgumentError(`onnxruntime cannot load the model: ${reason}`, { cause: err });
  } finally {
    await session?.release();
  }
}
