// The live state of the daemon as the windows see it: fetched once on load (and on every reconnect),
// then kept current by folding `daemon-event`s into it. No polling.
import type { UnlistenFn } from "@tauri-apps/api/event";
import type { Alert } from "../bindings/Alert";
import type { ConfigStatus } from "../bindings/ConfigStatus";
import type { Connection } from "../bindings/Connection";
import type { ProxyStats } from "../bindings/ProxyStats";
import type { Sample } from "../bindings/Sample";
import type { ServiceStatus } from "../bindings/ServiceStatus";
import type { StatusReport } from "../bindings/StatusReport";
import * as api from "./api";

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
  proxyStats = $state<Record<string, ProxyStats>>({});
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

  get latest(): Sample | null {
    return this.samples.length ? this.samples[this.samples.length - 1] : null;
  }

  /** Subscribes to the events and fetches everything once. */
  async start(): Promise<void> {
    this.stopped = false;
    try {
      const subs = [
        api.onDaemonEvent((e) => this.apply(e)),
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
      this.error = api.asCommandError(e).message;
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
      const [report, history] = await Promise.all([api.getStatus(), api.getHistory()]);
      this.report = report;
      this.services = report.services;
      this.alerts = report.alerts.filter((a) => a.cleared == null);
      this.config = report.config;
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
      this.proxyStats = (await api.getProxyStats()) ?? {};
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
      this.error = err.message;
    }
  }

  /** Folds one daemon event into the state. */
  apply(e: api.DaemonEvent): void {
    switch (e.type) {
      case "snapshot": {
        // The whole status: first on every stream, and again after this client fell behind.
        const { type: _t, ...report } = e;
        this.report = report;
        this.services = report.services;
        this.alerts = report.alerts.filter((a) => a.cleared == null);
        this.config = report.config;
        this.proxyStatsSoon();
        break;
      }
      case "service": {
        const { type: _t, ...svc } = e;
        const i = this.services.findIndex((s) => s.name === svc.name);
        if (i >= 0) this.services[i] = svc;
        else this.services.push(svc);
        this.proxyStatsSoon();
        break;
      }
      case "service_removed":
        this.services = this.services.filter((s) => s.name !== e.name);
        break;
      case "alert": {
        const { type: _t, ...alert } = e;
        const rest = this.alerts.filter((a) => a.id !== alert.id);
        this.alerts = alert.cleared == null ? [...rest, alert] : rest;
        break;
      }
      case "alert_cleared":
        this.alerts = this.alerts.filter((a) => a.id !== e.id);
        break;
      case "config": {
        const { type: _t, ...status } = e;
        this.config = status;
        break;
      }
      case "monitor": {
        const next = this.samples.length >= HISTORY_LEN ? this.samples.slice(1) : this.samples.slice();
        next.push(e.sample);
        this.samples = next;
        this.now = e.sample.t_ms;
        const mem = e.service_memory;
        if (mem) {
          for (const s of this.services) {
            if (s.name in mem) s.memory_bytes = mem[s.name];
          }
        }
        break;
      }
      case "shutdown":
        // The daemon is going away; the `connection` event that follows shows the unreachable view.
        break;
    }
  }
}
