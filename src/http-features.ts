import type { TemplatedApp } from 'uWebSockets.js';
import type { TokenVerifier } from './auth/token-verifier.js';
import type { DeviceTombstones } from './auth/tombstones.js';
import type { Config } from './config/schema.js';
import { mountDevices } from './devices-http.js';
import { mountPushToken } from './jobs/http.js';
import { createKeys } from './keys/create-key-store.js';
import type { KeyStore } from './keys/key-store.js';
import type { Logger } from './lib/log.js';
import { createMedia } from './media/create-media.js';
import type { MediaIndex } from './media/media-index.js';
import type { Store } from './store/store.js';

/**
 * The HTTP features beside the WebSocket of one shard thread: media (src/media), the prekey
 * directory (src/keys), each switched by its `enabled` key, push token registration
 * (src/jobs/http.ts, answering 503 when `push.enabled` is false) and device removal
 * (src/devices-http.ts). Created without I/O (so the routes can be
 * mounted when the gateway's app is built), opened before the shard listens, closed at drain.
 */
export interface HttpFeatures {
  /**
   * Where media references are recorded (null when media is disabled). The conversation actors use
   * it through src/media/send-refs.ts (src/shard.ts wires it): a send's media ids are checked before
   * it is queued, and `recordSent(conv, ids)` runs after its commit and before its `sent`.
   */
  readonly mediaIndex: MediaIndex | null;
  /** The prekey directory (null when disabled); DELETE /devices/:device removes a device's keys. */
  readonly keyStore: KeyStore | null;
  mount(
    app: TemplatedApp,
    deps: {
      store: Pick<Store, 'getMember' | 'setPushToken' | 'putDevice' | 'removeDevice'>;
      verify: TokenVerifier;
      log: Logger;
      /** Device removal: its tombstone and how to close its live sessions (src/devices-http.ts). */
      devices: { tombstones: Pick<DeviceTombstones, 'put'>; closeSessions: (user: string, device: string) => Promise<void> };
    },
  ): void;
  open(): Promise<void>;
  /** Idempotent; never rejects. */
  close(): Promise<void>;
}

export interface HttpFeatureHooks {
  /** A device's one-time prekeys fell below keys.lowThreshold: tell it to upload more. */
  onKeysLow?: (user: string, device: string, remaining: number) => void;
}

export function createHttpFeatures(
  cfg: Pick<Config, 'media' | 'keys' | 'store' | 'dataDir' | 'push' | 'cluster'>,
  hs256Secret: string | undefined,
  hooks: HttpFeatureHooks = {},
): HttpFeatures {
  const media = cfg.media.enabled ? createMedia(cfg, hs256Secret) : null;
  const keys = cfg.keys.enabled ? createKeys(cfg, hooks.onKeysLow) : null;
  return {
    mediaIndex: media?.index ?? null,
    keyStore: keys?.store ?? null,
    mount(app, deps) {
      media?.mount(app, deps);
      keys?.mount(app, deps);
      // PUT/DELETE /push-token (src/jobs/http.ts): always mounted, 503 when push is disabled.
      mountPushToken(app, { store: deps.store, verify: deps.verify, enabled: cfg.push.enabled, log: deps.log });
      // DELETE /devices/:device (src/devices-http.ts): the device, its push token and its prekeys.
      mountDevices(app, { store: deps.store, keys: keys?.store ?? null, verify: deps.verify, log: deps.log, ...deps.devices });
    },
    async open() {
      await media?.open();
      await keys?.open();
    },
    async close() {
      await Promise.allSettled([media?.close(), keys?.close()]);
    },
  };
}
