import fs from 'node:fs/promises';
import path from 'node:path';
import { parseJobFile } from '../definitions/load.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { jobVariants, resolveSplit, type Split, type Variant } from '../serving/split.js';

/** What the read API knows of a job from its file: its variants, and its split if it has one. */
export interface JobServing {
  variants: Variant[];
  split: Split | null;
}

/** How often the jobs dir is looked at: a split edited in a job file answers within a second. */
export const SPLIT_POLL_MS = 250;

interface Entry {
  /** inode, size, mtime and ctime of the file last read: a file is read again only when one changes. */
  stamp: string;
  serving: JobServing | null;
}

/**
 * The `serving.split` of every job file in the jobs dir, kept fresh without a restart: the dir
 * is listed every SPLIT_POLL_MS, and a file is read and checked again when its stat changes
 * (an editor's rename-over changes the inode, a write the mtime). A file that fails its checks
 * keeps the last good split of its job (logged once per change); a file removed takes its
 * split with it. Every replica of the API must read the same jobs dir (the same files, e.g. one
 * ConfigMap or image), or replicas answer a key from different models.
 */
export class JobSplits {
  private readonly entries = new Map<string, Entry>();
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private dirProblem: string | undefined;

  constructor(
    private readonly jobsDir: string,
    private readonly log: Logger,
    private readonly pollMs = SPLIT_POLL_MS,
  ) {}

  /** Reads the jobs dir once, then keeps reading it. */
  async start(): Promise<void> {
    await this.scan();
    this.timer ??= setInterval(() => void this.scan(), this.pollMs).unref();
  }

  /** The job's variants and split as its file says now; undefined without a (valid) job file. */
  get(job: string): JobServing | undefined {
    return this.entries.get(job)?.serving ?? undefined;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.scanning;
  }

  // Never throws; one scan at a time.
  private scan(): Promise<void> {
    this.scanning ??= this.scanOnce().finally(() => (this.scanning = undefined));
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    let names: string[];
    try {
      names = (await fs.readdir(this.jobsDir)).filter((f) => f.endsWith('.json'));
      this.dirProblem = undefined;
    } catch (err) {
      const problem = errorMessage(err);
      if (problem !== this.dirProblem) {
        this.log.warn({ err: problem, jobsDir: this.jobsDir }, 'cannot list the jobs dir: serving splits stay as they were');
      }
      this.dirProblem = problem;
      return;
    }
    const present = new Set<string>();
    for (const file of names) {
      const job = path.basename(file, '.json');
      present.add(job);
      const full = path.join(this.jobsDir, file);
      try {
        const st = await fs.stat(full);
        const stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
        const entry = this.entries.get(job);
        if (entry?.stamp === stamp) continue;
        let serving: JobServing | null;
        try {
          const { spec } = parseJobFile(full, await fs.readFile(full, 'utf8'));
          serving = { variants: jobVariants(spec), split: resolveSplit(spec) };
        } catch (err) {
          // Keep answering as before: a half-saved or mistyped file must not switch traffic.
          this.log.warn(
            { err: errorMessage(err), job, file: full },
            entry?.serving ? 'job file refused: the job keeps its last good split' : 'job file refused: no split for the job',
          );
          this.entries.set(job, { stamp, serving: entry?.serving ?? null });
          continue;
        }
        if (entry && JSON.stringify(entry.serving?.split?.ranges) !== JSON.stringify(serving.split?.ranges)) {
          this.log.info(
            { job, split: serving.split?.ranges.map((r) => `${r.variant.name}:${r.share}`) ?? null },
            'split changed',
          );
        }
        this.entries.set(job, { stamp, serving });
      } catch {
        // Removed between readdir and stat: the next scan sees it gone.
      }
    }
    for (const job of this.entries.keys()) if (!present.has(job)) this.entries.delete(job);
  }
}
