import { fileTypeFromBuffer } from 'file-type';
import type { MediaConfig } from '../config/schema.js';
import type { MediaCategory } from './metrics.js';

/**
 * Type detection from the content's magic bytes (file-type), never from the client's Content-Type
 * or file name, and the size limit that follows from the type.
 */

/**
 * Bytes file-type needs to decide reliably (its documented sample size, 4100); detection runs once
 * this much has arrived, or at the end of a smaller body.
 */
export const SNIFF_BYTES = 4100;

export async function detectType(head: Uint8Array): Promise<string | undefined> {
  return (await fileTypeFromBuffer(head))?.mime;
}

export function categoryOf(mime: string): MediaCategory {
  if (mime.startsWith('image/')) return 'image';
  if (mime.startsWith('video/')) return 'video';
  if (mime.startsWith('audio/')) return 'audio';
  return 'document';
}

export interface TypePolicy {
  allowed: ReadonlySet<string>;
  maxBytes: Readonly<Record<MediaCategory, number>>;
  /** The largest limit of any category: the cap before the type is known. */
  maxAny: number;
}

export function typePolicy(cfg: Pick<MediaConfig, 'allowedTypes' | 'maxBytes'>): TypePolicy {
  const maxBytes = { ...cfg.maxBytes };
  return { allowed: new Set(cfg.allowedTypes), maxBytes, maxAny: Math.max(...Object.values(maxBytes)) };
}
