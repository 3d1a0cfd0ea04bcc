import { createHash } from 'node:crypto';

/** Weight of a node for a key: the first 48 bits of sha256(node + key), as a number. */
export function rendezvousWeight(nodeId: string, key: string): number {
  const digest = createHash('sha256').update(nodeId).update('\u0000').update(key).digest();
  return digest.readUIntBE(0, 6);
}

/**
 * Node ids ordered by rendezvous (highest-random-weight) hashing for `key`:
 * every router computes the same order from the same node set, and adding or
 * removing a node only moves the keys whose top-ranked nodes it was.
 */
export function rankNodes(key: string, nodeIds: readonly string[]): string[] {
  return nodeIds
    .map((id) => ({ id, weight: rendezvousWeight(id, key) }))
    .sort((a, b) => b.weight - a.weight || (a.id < b.id ? -1 : 1))
    .map((entry) => entry.id);
}

/** The `k` home nodes of a model version among `nodeIds`. */
export function homeNodes(model: string, version: number, nodeIds: readonly string[], k: number): string[] {
  return rankNodes(`${model}:${version}`, nodeIds).slice(0, k);
}
