/**
 * The background loops' own bounds, for `/healthz`. A loop opens a pass when it starts a piece of
 * work (an inventory refresh, a df run, a poll round, a render), beats as it makes progress and
 * ends the pass when done. A pass that has shown no progress for longer than its bound is stuck:
 * every engine request ends within its deadline, so only a defect can get there, and a process
 * with a stuck loop cannot recover by itself. `/healthz` then answers 503, so that the image's
 * health check or the service manager restarts it.
 */
export interface Pass {
  /** Progress: the bound counts again from now. */
  beat(): void;
  end(): void;
}

interface OpenPass {
  loop: string;
  boundMs: number;
  lastBeat: number;
}

export class LoopHealth {
  private readonly open = new Set<OpenPass>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Opens a pass of `loop` that must show progress at least every `boundMs`. */
  begin(loop: string, boundMs: number): Pass {
    const pass: OpenPass = { loop, boundMs, lastBeat: this.now() };
    this.open.add(pass);
    return {
      beat: () => void (pass.lastBeat = this.now()),
      end: () => void this.open.delete(pass),
    };
  }

  /** Runs `work` as one pass of `loop`. */
  async run<T>(loop: string, boundMs: number, work: (pass: Pass) => Promise<T>): Promise<T> {
    const pass = this.begin(loop, boundMs);
    try {
      return await work(pass);
    } finally {
      pass.end();
    }
  }

  /** One line per stuck pass ("inventory: no progress for 61 s, bound 30 s"); empty while healthy. */
  stuck(): string[] {
    const now = this.now();
    const lines: string[] = [];
    for (const p of this.open) {
      const idle = now - p.lastBeat;
      if (idle > p.boundMs) lines.push(`${p.loop}: no progress for ${Math.round(idle / 1000)} s, bound ${Math.round(p.boundMs / 1000)} s`);
    }
    return lines;
  }

  /** What /healthz says: alive unless a pass is stuck (then only a restart helps). */
  report(): { live: boolean; detail: string } {
    const stuck = this.stuck();
    return stuck.length === 0 ? { live: true, detail: 'ok' } : { live: false, detail: `stuck: ${stuck.join('; ')}` };
  }
}
