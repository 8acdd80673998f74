// Typed wrappers of the app's Tauri commands and events (the table in crates/client/src/app.rs).
// Everything the windows say to the daemon goes through here, so tests mock one thing: the IPC.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type { ActionReply } from "../bindings/ActionReply";
import type { BenchHistory } from "../bindings/BenchHistory";
import type { BenchOptions } from "../bindings/BenchOptions";
import type { BenchResult } from "../bindings/BenchResult";
import type { BenchStarted } from "../bindings/BenchStarted";
import type { CommandError } from "../bindings/CommandError";
import type { ConfigDocument } from "../bindings/ConfigDocument";
import type { ConfigEdit } from "../bindings/ConfigEdit";
import type { Comparison } from "../bindings/Comparison";
import type { ConfigPreview } from "../bindings/ConfigPreview";
import type { Connection } from "../bindings/Connection";
import type { Diagnostic } from "../bindings/Diagnostic";
import type { DoctorOptions } from "../bindings/DoctorOptions";
import type { DoctorReport } from "../bindings/DoctorReport";
import type { Event as DaemonEvent } from "../bindings/Event";
import type { FocusAlert } from "../bindings/FocusAlert";
import type { KeyInfo } from "../bindings/KeyInfo";
import type { KeyList } from "../bindings/KeyList";
import type { LogLine } from "../bindings/LogLine";
import type { MonitorHistory } from "../bindings/MonitorHistory";
import type { NewKey } from "../bindings/NewKey";
import type { ProxyStats } from "../bindings/ProxyStats";
import type { Replies } from "../bindings/Replies";
import type { Request } from "../bindings/Request";
import type { StatusReport } from "../bindings/StatusReport";

import type { Verb } from "../bindings/Verb";

export type { DaemonEvent, Verb };

/** Any request of the control API (the `Request` enum, generated from Rust), answered with the type that
 *  request names (the generated `Replies` map): `call({ request: "listeners" })` is a `ListenerList`. A
 *  new endpoint needs no command of its own: its variant, the daemon's handler, and this. */
export const call = <K extends keyof Replies & Request["request"]>(request: Extract<Request, { request: K }>) =>
  invoke<Replies[K]>("call", { request });
export const getStatus = () => invoke<StatusReport>("get_status");
export const serviceAction = (name: string, verb: Verb) =>
  invoke<ActionReply>("service_action", { name, verb });
export const getLogs = (name: string, lines: number) => invoke<string[]>("get_logs", { name, lines });
export const followLogs = (name: string) => invoke<null>("follow_logs", { name });
export const unfollowLogs = (name: string) => invoke<null>("unfollow_logs", { name });
export const getHistory = () => invoke<MonitorHistory>("get_history");
/** settings.toml of this Mac, or (`host`) of a [hosts] Mac: this Mac's daemon forwards the request, and that
 *  host's daemon validates and writes it with the same rules (409 when it changed meanwhile, 422 invalid). */
export const getConfig = (host: string | null = null) => invoke<ConfigDocument>("get_config", { host });
export const previewConfig = (edits: ConfigEdit[], host: string | null = null) =>
  invoke<ConfigPreview>("preview_config", { edits, host });
export const saveConfig = (edits: ConfigEdit[], baseHash: string | null, host: string | null = null) =>
  invoke<ConfigPreview>("save_config", { edits, baseHash, host });
export const getProxyStats = () => invoke<Record<string, ProxyStats>>("get_proxy_stats");
/** The proxy's API keys (never their secrets); `keyring_error` when the OS keyring cannot be read. */
export const listKeys = () => invoke<KeyList>("list_keys");
/** Makes a key (`services` empty = every service). The answer's `secret` is the only time it is ever shown:
 *  keep it in the view that shows it, nowhere else. */
export const addKey = (name: string | null, services: string[]) => invoke<NewKey>("add_key", { name, services });
export const removeKey = (id: string) => invoke<KeyInfo>("remove_key", { id });
export const getConnection = () => invoke<Connection>("get_connection");
export const startDaemon = () => invoke<Connection>("start_daemon");
/** Starts a benchmark run. `opts` holds only what the user set: the daemon fills the rest (every chat / ocr /
 *  embedding service, levels 1,2,4,8, 16 requests, 128 max tokens, thinking check on, no long context).
 *  Rejects with kind "refused" while a run is going. Follow it with `bench_progress` / `bench_done` events. */
export const benchStart = (opts: Partial<BenchOptions>) => invoke<BenchStarted>("bench_start", { opts });
/** The run going now, if any (a window opened mid-run follows it). */
export const benchCurrent = () => invoke<BenchStarted | null>("bench_current");
/** Cancels the run going now (the requests in flight finish; the partial result is saved). */
export const benchCancel = () => invoke<BenchStarted>("bench_cancel");
/** A saved run by id, or "last". */
export const benchResult = (id: string) => invoke<BenchResult>("bench_result", { id });
/** Every saved run, oldest first. */
export const benchHistory = () => invoke<BenchHistory>("bench_history");
/** B against A, metric by metric. */
export const benchCompare = (a: string, b: string) => invoke<Comparison>("bench_compare", { a, b });
/** The checklist (takes as long as its checks; refused while a benchmark runs). `{}` = every default. */
export const runDoctor = (opts: Partial<DoctorOptions> = {}) => invoke<DoctorReport>("run_doctor", { opts });
/** Tells the app this window has drawn its first frame with data (the app times open → drawn). */
export const windowReady = () => invoke<null>("window_ready");

/** An unlisten that never throws (the window may be going away, or the IPC already gone). */
const quiet =
  (un: UnlistenFn): UnlistenFn =>
  () => {
    try {
      void Promise.resolve(un() as unknown).catch(() => {});
    } catch {
      // already gone
    }
  };
const on = <T>(event: string, cb: (payload: T) => void): Promise<UnlistenFn> =>
  listen<T>(event, (e) => cb(e.payload)).then(quiet);

export const onDaemonEvent = (cb: (e: DaemonEvent) => void): Promise<UnlistenFn> =>
  on<DaemonEvent>("daemon-event", cb);
/** The daemon's status with every event folded in (by the app, in Rust): render it as is. */
export const onDaemonStatus = (cb: (s: StatusReport) => void): Promise<UnlistenFn> =>
  on<StatusReport>("daemon-status", cb);
export const onConnection = (cb: (c: Connection) => void): Promise<UnlistenFn> =>
  on<Connection>("connection", cb);
export const onLogLine = (cb: (l: LogLine) => void): Promise<UnlistenFn> =>
  on<LogLine>("log-line", cb);
/** The app showed this (hidden, pre-made) window again: its data is stale. */
export const onWindowShown = (cb: () => void): Promise<UnlistenFn> => on<null>("window-shown", () => cb());
export const onFocusAlert = (cb: (f: FocusAlert) => void): Promise<UnlistenFn> =>
  on<FocusAlert>("focus-alert", cb);

/** Any rejection as a CommandError (a plain string or Error becomes kind "failed"). */
export function asCommandError(e: unknown): CommandError {
  if (e && typeof e === "object" && "kind" in e && "message" in e) return e as CommandError;
  const message = e instanceof Error ? e.message : typeof e === "string" ? e : JSON.stringify(e);
  return { kind: "failed", message, preview: null };
}

/** `PATH:LINE:COL: severity: message (hint)`, exactly as `mlx-box validate` prints it. */
export function formatDiagnostic(d: Diagnostic): string {
  return `${d.path}:${d.line}:${d.col}: ${d.severity}: ${d.message}${d.hint ? ` (${d.hint})` : ""}`;
}
