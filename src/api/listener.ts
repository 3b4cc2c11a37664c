import pg from 'pg';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

export interface ListenerOptions {
  /** How to connect: the API's pool options, or a connection string. */
  connection: pg.ClientConfig;
  channels: string[];
  log: Logger;
  onNotification(channel: string, payload: string): void;
  /**
   * Called after every (re)connect once LISTEN is in place: whatever was announced while no
   * connection listened is only found by reading everything again.
   */
  onConnect(): Promise<void>;
  /** First reconnect delay; doubled per failure up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * One dedicated connection that LISTENs (a pooled client would lose its LISTEN on release).
 * When it drops it reconnects with backoff, forever, until close().
 */
export class Listener {
  private client: pg.Client | undefined;
  private closed = false;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private connecting: Promise<void> | undefined;

  constructor(private readonly options: ListenerOptions) {}

  get connected(): boolean {
    return this.client !== undefined;
  }

  /** Connects the first time; throws when that fails, so a server never starts deaf. */
  async start(): Promise<void> {
    await this.connect();
  }

  /** A cheap round trip on the listening connection: a half-dead socket is found and replaced. */
  async ping(timeoutMs = 5000): Promise<void> {
    const client = this.client;
    if (!client) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.query('SELECT 1'),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (err) {
      this.lost(client, err);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.connecting?.catch(() => undefined);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private connect(): Promise<void> {
    const attempt = (async () => {
      const { connection } = this.options;
      const client = new pg.Client({
        ...connection,
        application_name: `${connection.application_name ?? 'prescore'}-listen`,
        keepAlive: true,
      });
      client.on('error', (err) => this.lost(client, err));
      client.on('end', () => this.lost(client, new Error('connection ended')));
      client.on('notification', (msg) => {
        if (this.client === client) this.options.onNotification(msg.channel, msg.payload ?? '');
      });
      try {
        await client.connect();
        for (const channel of this.options.channels) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
        if (this.closed) throw new Error('closed while connecting');
        this.client = client;
        await this.options.onConnect();
      } catch (err) {
        if (this.client === client) this.client = undefined;
        client.removeAllListeners('end');
        client.on('error', () => undefined);
        await client.end().catch(() => undefined);
        throw err;
      }
    })();
    this.connecting = attempt;
    return attempt;
  }

  private lost(client: pg.Client, err: unknown): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.removeAllListeners('end');
    client.on('error', () => undefined);
    void client.end().catch(() => undefined);
    if (this.closed) return;
    this.options.log.warn({ err: errorMessage(err) }, 'LISTEN connection lost; reconnecting');
    this.schedule();
  }

  private schedule(): void {
    const min = this.options.minBackoffMs ?? 100;
    const max = this.options.maxBackoffMs ?? 5000;
    const delay = Math.min(max, min * 2 ** this.failures) * (0.75 + Math.random() * 0.5);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.closed) return;
      this.connect().then(
        () => {
          this.options.log.info('LISTEN connection restored');
          this.failures = 0;
        },
        (err) => {
          this.failures++;
          if (this.closed) return;
          this.options.log.warn({ err: errorMessage(err), attempt: this.failures }, 'LISTEN reconnect failed');
          this.schedule();
        },
      );
    }, delay);
  }
}
