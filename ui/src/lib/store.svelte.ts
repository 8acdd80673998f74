// The live state of the daemon as the windows see it: fetched once on load (and on every reconnect), then
// replaced by each `daemon-status` (the app folds the daemon's events into it, in Rust:
// mlxbox_client::menubar::Snapshot). Only the monitor samples, a time series, are appended here. No polling.
import type { Replies } from "../bindings/Replies";
import type { UnlistenFn } from "@tauri-apps/api/event";
import type { Alert } from "../bindings/Alert";
import type { ConfigStatus } from "../bindings/ConfigStatus";
import type { Connection } from "../bindings/Connection";
import type { LiveRequests } from "../bindings/LiveRequests";
import type { ProxyStats } from "../bindings/ProxyStats";
import type { Sample } from "../bindings/Sample";
import type { ServiceStatus } from "../bindings/ServiceStatus";
import type { StatusReport } from "../bindings/StatusReport";
import * as api from "./api";

/** As `Alert::needs_attention` in Rust: active, not acknowledged, not snoozed at `now`. */
export function needsAttention(a: Alert, now: number): boolean {
  return a.cleared == null && !a.acknowledged && (a.snoozed_until == null || a.snoozed_until <= now);
}

/** 10 minutes at 1 Hz. */
export const HISTORY_LEN = 600;

export class LiveStore {
  connection = $state<Connection | null>(null);
  /** The last status report (version, pid, config path…); services/alerts live in their own fields. */
  report = $state<StatusReport | null>(null);
  services = $state<ServiceStatus[]>([]);
  alerts = $state<Alert[]>([]);
  config = $state<ConfigStatus | null>(null);
  samples = $state<Sample[]>([]);
  proxyStats = $state<Replies["proxy_stats"]>({});
  /** Each service's last minute of requests (TTFT p50/p95, tok/s), from the daemon's /metrics histograms. */
  live = $state<Record<string, LiveRequests | undefined>>({});
  /** Alert to highlight (set by a notification click). */
  focusedAlert = $state<string | null>(null);
  /** An error of the last fetch, other than "unreachable" (which shows as the unreachable view). */
  error = $state<string | null>(null);
  loading = $state(true);
  /** "Now" for uptimes: the newest monitor sample's time (it ticks every second), else the fetch time. */
  now = $state(Date.now());

  private unlisten: UnlistenFn[] = [];
  private stopped = false;
  private proxyTimer: ReturnType<typeof setTimeout> | null = null;

  get unreachable(): boolean {
    return this.connection != null && !this.connection.connected;
  }

  /** The alerts that ask for attention now: not acknowledged, not snoozed (the daemon keeps both, so
   *  the menu bar's count and this one agree). */
  get attention(): Alert[] {
    return this.alerts.filter((a) => needsAttention(a, this.now));
  }

  get latest(): Sample | null {
    return this.samples.length ? this.samples[this.samples.length - 1] : null;
  }

  /** Subscribes to the events and fetches everything once. */
  async start(): Promise<void> {
    this.stopped = false;
    try {
      const subs = [
        api.onDaemonEvent((e) => this.apply(e)),
        api.onDaemonStatus((s) => this.setStatus(s)),
        api.onConnection((c) => {
          const was = this.connection?.connected;
          this.connection = c;
          if (c.connected && !was) void this.refresh();
        }),
        api.onFocusAlert((f) => (this.focusedAlert = f.id)),
      ];
      for (const s of subs) {
        const un = await s;
        if (this.stopped) un();
        else this.unlisten.push(un);
      }
    } catch (e) {
      if (this.stopped) return;
      this.error = api.errorText(e);
    }
    if (this.stopped) return;
    try {
      this.connection = await api.getConnection();
    } catch (e) {
      this.failed(e);
    }
    if (this.connection?.connected !== false) await this.refresh();
    this.loading = false;
  }

  stop(): void {
    this.stopped = true;
    for (const u of this.unlisten) u();
    this.unlisten = [];
    if (this.proxyTimer) clearTimeout(this.proxyTimer);
  }

  /** Re-fetches status and history (on load and on every reconnect). */
  async refresh(): Promise<void> {
    try {
      const [report, history] = await Promise.all([api.call({ request: "status" }), api.call({ request: "monitor_history" })]);
      this.setStatus(report, false);
      this.samples = history.samples.slice(-HISTORY_LEN);
      this.now = this.latest?.t_ms ?? Date.now();
      this.error = null;
      if (this.connection && !this.connection.connected) this.connection = { ...this.connection, connected: true, error: null };
    } catch (e) {
      this.failed(e);
      return;
    }
    void this.fetchProxyStats();
  }

  async fetchProxyStats(): Promise<void> {
    try {
      this.proxyStats = (await api.call({ request: "proxy_stats" })) ?? {};
    } catch {
      // Optional figures: the dashboard just leaves them out.
    }
  }

  /** Proxy counters change with traffic, not events: re-read them at most once a second after a service event. */
  private proxyStatsSoon(): void {
    if (this.proxyTimer) return;
    this.proxyTimer = setTimeout(() => {
      this.proxyTimer = null;
      void this.fetchProxyStats();
    }, 1000);
  }

  private failed(e: unknown): void {
    const err = api.asCommandError(e);
    if (err.kind === "unreachable") {
      this.connection = {
        connected: false,
        state_dir: this.connection?.state_dir ?? "",
        error: err.message,
      };
    } else {
      this.error = api.errorText(e);
    }
  }

  /** The daemon's status as the app folded it (every service, alert and config change is in it). */
  setStatus(report: StatusReport, fromEvent = true): void {
    // Proxy counters move with traffic; re-read them when a service changed state (not on memory ticks).
    const states = (l: ServiceStatus[]) => l.map((s) => `${s.name}:${s.state}:${s.pid}`).join();
    const servicesChanged = states(report.services) !== states(this.services);
    this.report = report;
    this.services = report.services;
    this.alerts = report.alerts.filter((a) => a.cleared == null);
    this.config = report.config;
    if (fromEvent && servicesChanged) this.proxyStatsSoon();
  }

  /** A daemon event: the windows keep the monitor's samples (the status comes folded, see `setStatus`). */
  apply(e: api.DaemonEvent): void {
    if (e.type !== "monitor") return;
    const next = this.samples.length >= HISTORY_LEN ? this.samples.slice(1) : this.samples.slice();
    next.push(e.sample);
    this.samples = next;
    this.live = e.live ?? {};
    this.now = e.sample.t_ms;
  }
}
