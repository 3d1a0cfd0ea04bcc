/** The error a promise rejects with (a failed call's, say); throws when it resolves instead. */
export async function rejectionOf<T = Error>(promise: Promise<unknown>): Promise<T> {
  try {
    await promise;
  } catch (err) {
    return err as T;
  }
  throw new Error('expected a rejection, and the promise resolved');
}
