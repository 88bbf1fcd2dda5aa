import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/**
 * piscina task: SHA-256 (hex) of a spooled upload file, off the shard thread (src/media/hasher.ts).
 */
export default async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
