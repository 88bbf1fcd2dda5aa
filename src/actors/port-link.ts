/**
 * ShardLink over worker_threads MessagePorts, for the shard composition (src/shard.ts): each shard
 * thread holds one port per other shard (for example from a MessageChannel per pair, created by the
 * main thread and passed in workerData/transferList).
 *
 * Frames are posted by structured clone, never transferred: msgpackr returns views into a buffer it
 * reuses, and transferring would detach it under the encoder.
 */
import type { MessagePort } from 'node:worker_threads';
import type { ShardLink } from './shard-link.js';

/** `ports[s]` reaches shard `s` (undefined for the shard itself). */
export function portShardLink(ports: ReadonlyArray<MessagePort | undefined>): ShardLink {
  return {
    post(shard, bytes) {
      const port = ports[shard];
      if (port === undefined) throw new Error(`no link to shard ${shard}`);
      port.postMessage(bytes);
    },
  };
}

/** Delivers every frame arriving on `ports` to `receive` (createShardActors(...).onLinkMessage). */
export function receiveFromPorts(ports: ReadonlyArray<MessagePort | undefined>, receive: (bytes: Uint8Array) => void): void {
  for (const port of ports) {
    port?.on('message', (data: unknown) => {
      if (data instanceof Uint8Array) receive(data);
    });
  }
}
