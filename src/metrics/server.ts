import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

export interface MetricsServer {
  /** http://host:port, with the port actually bound (for --metrics-port 0). */
  url: string;
  close(): Promise<void>;
}

const TIMEOUT_MS = 10_000;

/**
 * `/metrics` (Prometheus text) and `/healthz` of a worker or scheduler, on a port of its own
 * (`--metrics-port`): plain node:http, no tokens, so keep the port off the public network.
 */
export async function serveMetrics(registry: Registry, host: string, port: number, log: Logger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(405, 'application/json', JSON.stringify({ error: `method ${req.method} not allowed` }));
    }
    if (path === '/healthz') return send(200, 'application/json', JSON.stringify({ status: 'ok' }));
    if (path !== '/metrics') {
      return send(404, 'application/json', JSON.stringify({ error: `no route ${req.method} ${path!.slice(0, 200)}` }));
    }
    registry.metrics().then(
      (text) => send(200, registry.contentType, text),
      (err: unknown) => {
        log.warn({ err: errorMessage(err) }, 'metrics: collecting failed');
        send(500, 'application/json', JSON.stringify({ error: 'collecting metrics failed' }));
      },
    );
  });
  server.requestTimeout = TIMEOUT_MS;
  server.headersTimeout = TIMEOUT_MS;
  server.keepAliveTimeout = 65_000; // longer than Prometheus' scrape interval: one connection per scraper
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.warn({ err: errorMessage(err) }, 'metrics server error'));
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shown}:${address.port}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
