// The Benchmark window's state: the run being followed (from `bench_current` on load / on `window-shown`, from
// `bench_start`, or from the first `bench_progress` event of a run started elsewhere, e.g. the tray menu), its
// progress, the result shown, the history and a comparison. Folded from `daemon-event`s; no polling.
import type { UnlistenFn } from "@tauri-apps/api/event";
import type { BenchDone } from "../bindings/BenchDone";
import type { BenchOptions } from "../bindings/BenchOptions";
import type { BenchProgress } from "../bindings/BenchProgress";
import type { BenchResult } from "../bindings/BenchResult";
import type { BenchSummary } from "../bindings/BenchSummary";
import type { Comparison } from "../bindings/Comparison";
import * as api from "./api";

/** What a run did so far in one service and phase (requests seen in it, its last status line). */
export type PhaseProgress = { service: string; phase: string; requests: number; message: string };

export class BenchState {
  /** Id of the run being followed, null when none runs. */
  running = $state<string | null>(null);
  starting = $state(false);
  cancelling = $state(false);
  /** Requests done / planned in the whole run, and the last status line. */
  done = $state(0);
  total = $state(0);
  message = $state("");
  /** The phases the run went through, in order (the last one is going). */
  phases = $state<PhaseProgress[]>([]);
  /** Starting or cancelling failed. */
  actionError = $state<string | null>(null);
  /** The run ended with an error (no result saved). */
  runError = $state<string | null>(null);

  result = $state<BenchResult | null>(null);
  loadingResult = $state(false);
  resultError = $state<string | null>(null);

  history = $state<BenchSummary[]>([]);
  historyError = $state<string | null>(null);

  comparison = $state<Comparison | null>(null);
  comparing = $state(false);
  compareError = $state<string | null>(null);

  /** Runs whose `bench_done` was seen: never followed again (a late `bench_start` answer, a stale event). */
  private finished = new Set<string>();
  private unlisten: UnlistenFn[] = [];
  private stopped = false;
  /** Bumped by every result load: only the newest answer is shown. */
  private resultSeq = 0;

  async start(): Promise<void> {
    this.stopped = false;
    try {
      const subs = [api.onDaemonEvent((e) => this.apply(e)), api.onWindowShown(() => void this.sync())];
      for (const s of subs) {
        const un = await s;
        if (this.stopped) un();
        else this.unlisten.push(un);
      }
    } catch (e) {
      if (!this.stopped) this.actionError = api.errorText(e);
    }
    if (!this.stopped) await this.sync(true);
  }

  stop(): void {
    this.stopped = true;
    for (const u of this.unlisten) u();
    this.unlisten = [];
  }

  /** Re-checks the run going now and the history (on load, and when the window is shown again). On first load
   *  with nothing running, shows the newest saved run. */
  async sync(first = false): Promise<void> {
    const was = this.running;
    try {
      const current = await api.callOrNull({ request: "bench_current" });
      if (current) this.follow(current.id);
      else if (was && this.running === was) {
        // It ended while the window was hidden (its bench_done never reached us).
        this.ended(was);
        void this.show(was);
      }
    } catch (e) {
      this.actionError = api.errorText(e);
    }
    await this.refreshHistory();
    if (first && !this.running && !this.result && this.history.length) {
      await this.show(this.history[this.history.length - 1].id);
    }
  }

  async refreshHistory(): Promise<void> {
    try {
      this.history = (await api.call({ request: "bench_history" })).runs;
      this.historyError = null;
    } catch (e) {
      this.historyError = api.errorText(e);
    }
  }

  /** Starts a run with only the options the user set. */
  async run(opts: Partial<BenchOptions>): Promise<void> {
    this.starting = true;
    this.actionError = null;
    this.runError = null;
    try {
      const started = await api.call({ request: "bench_start", options: opts as BenchOptions });
      this.follow(started.id);
    } catch (e) {
      this.actionError = api.errorText(e);
      // One runs already (started from the menu or the CLI; the daemon says "conflict"): follow it.
      if (api.asCommandError(e).kind === "conflict") {
        try {
          const current = await api.callOrNull({ request: "bench_current" });
          if (current) this.follow(current.id);
        } catch {
          // the error above says enough
        }
      }
    } finally {
      this.starting = false;
    }
  }

  async cancel(): Promise<void> {
    this.cancelling = true;
    this.actionError = null;
    try {
      await api.call({ request: "bench_cancel" });
      // bench_done follows (the requests in flight finish first).
    } catch (e) {
      this.actionError = api.errorText(e);
      this.cancelling = false;
    }
  }

  /** Shows a saved run. */
  async show(id: string): Promise<void> {
    const seq = ++this.resultSeq;
    this.loadingResult = true;
    this.resultError = null;
    try {
      const r = await api.call({ request: "bench_result", id });
      if (seq === this.resultSeq) this.result = r;
    } catch (e) {
      if (seq === this.resultSeq) this.resultError = api.errorText(e);
    } finally {
      if (seq === this.resultSeq) this.loadingResult = false;
    }
  }

  async compare(a: string, b: string): Promise<void> {
    this.comparing = true;
    this.compareError = null;
    try {
      this.comparison = await api.call({ request: "bench_compare", a, b });
    } catch (e) {
      this.comparison = null;
      this.compareError = api.errorText(e);
    } finally {
      this.comparing = false;
    }
  }

  apply(e: api.DaemonEvent): void {
    if (e.type === "bench_progress") this.progress(e);
    else if (e.type === "bench_done") this.doneWith(e);
  }

  private follow(id: string): void {
    if (this.finished.has(id) || this.running === id) return;
    this.running = id;
    this.done = 0;
    this.total = 0;
    this.message = "";
    this.phases = [];
    this.runError = null;
    this.cancelling = false;
  }

  private ended(id: string): void {
    this.finished.add(id);
    if (this.running === id) this.running = null;
    this.cancelling = false;
  }

  private progress(p: BenchProgress): void {
    this.follow(p.id);
    if (this.running !== p.id) return;
    this.done = p.done;
    this.total = p.total;
    this.message = p.message;
    const last = this.phases[this.phases.length - 1];
    if (last && last.service === p.service && last.phase === p.phase) {
      last.requests += 1;
      last.message = p.message;
    } else {
      this.phases.push({ service: p.service, phase: p.phase, requests: 1, message: p.message });
    }
  }

  private doneWith(d: BenchDone): void {
    // One run at a time in the daemon: the end of any run is the end of the one shown running (or one this
    // window missed the start of).
    this.ended(d.id);
    if (d.error) {
      this.runError = d.error;
    } else {
      this.runError = null;
      void this.show(d.id);
    }
    void this.refreshHistory();
  }
}
