import type { Logger } from '../lib/log.js';
import { METRICS_CONTENT_TYPE } from '../metrics/threads.js';
import type { UwsApp } from './uws.js';

/**
 * HTTP endpoints served by every shard on the shared port (whichever shard the kernel picked
 * answers):
 * - `GET /healthz`: 200 while the thread runs (liveness).
 * - `GET /readyz`: 200 when the store is open and the shard accepts connections, 503 while starting
 *   or draining (readiness: a load balancer stops sending new clients).
 * - `GET /metrics`: Prometheus text of all threads of the node, merged by the main thread.
 * - media and prekey routes, mounted by the shard before these (src/http-features.ts, docs/HTTP.md).
 * - anything else: 404 with a short message; `GET /ws` without an upgrade: 426.
 */
export interface HttpDeps {
  metricsText: () => Promise<string>;
  ready: () => boolean;
  log: Logger;
}

const TEXT = 'text/plain; charset=utf-8';

export function mountHttp(app: UwsApp, d: HttpDeps): void {
  app.get('/healthz', (res) => {
    res.cork(() => res.writeHeader('Content-Type', TEXT).end('ok\n'));
  });

  app.get('/readyz', (res) => {
    const ready = d.ready();
    res.cork(() => res.writeStatus(ready ? '200 OK' : '503 Service Unavailable').writeHeader('Content-Type', TEXT).end(ready ? 'ready\n' : 'not ready\n'));
  });

  app.get('/metrics', (res) => {
    // Answered asynchronously (the main thread merges every thread's metrics): a scraper that
    // hangs up meanwhile must not crash the thread, so onAborted comes first.
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    d.metricsText().then(
      (text) => {
        if (!aborted) res.cork(() => res.writeHeader('Content-Type', METRICS_CONTENT_TYPE).end(text));
      },
      (err: unknown) => {
        d.log.warn({ err }, 'metrics unavailable');
        if (!aborted) res.cork(() => res.writeStatus('503 Service Unavailable').writeHeader('Content-Type', TEXT).end('metrics unavailable\n'));
      },
    );
  });

  app.any('/*', (res, req) => {
    const url = req.getUrl();
    const method = req.getMethod();
    if (url === '/ws') {
      res.cork(() => res.writeStatus('426 Upgrade Required').writeHeader('Content-Type', TEXT).end('/ws expects a WebSocket upgrade: ws://host:port/ws?v=1\n'));
      return;
    }
    res.cork(() =>
      res
        .writeStatus('404 Not Found')
        .writeHeader('Content-Type', TEXT)
        .end(`no such endpoint: ${method.toUpperCase()} ${url.slice(0, 100)}; try /ws (WebSocket), /healthz, /readyz, /metrics, /media or /keys (docs/HTTP.md)\n`),
    );
  });
}
