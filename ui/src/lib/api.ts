// The windows' way to the app: `call` carries any request of the control API to the daemon (this Mac's, or
// through it another Mac's), typed end to end by the generated `Request` and `Replies`; the other commands
// are the app's own (crates/client/src/app.rs has the table). Tests mock one thing: the IPC.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import { getCurrentWebviewWindow } from "@tauri-apps/api/webviewWindow";
import { open } from "@tauri-apps/plugin-dialog";
import type { ChatEvent } from "../bindings/ChatEvent";
import type { ChatSend } from "../bindings/ChatSend";
import type { CommandError } from "../bindings/CommandError";
import type { Connection } from "../bindings/Connection";
import type { Diagnostic } from "../bindings/Diagnostic";
import type { Event as DaemonEvent } from "../bindings/Event";
import type { FocusAlert } from "../bindings/FocusAlert";
import type { LogLine } from "../bindings/LogLine";
import type { Replies } from "../bindings/Replies";
import type { Request } from "../bindings/Request";
import type { StatusReport } from "../bindings/StatusReport";
import type { Verb } from "../bindings/Verb";

export type { DaemonEvent, Verb };

/** The tag of a request that has a reply of its own (every one but `host`, which answers as what it forwards). */
export type Tag = keyof Replies & Request["request"];
/** The request of that tag, as the generated `Request` spells it. */
export type RequestOf<K extends Tag> = Extract<Request, { request: K }>;

/** Any request of the control API, answered with the type it names: `call({ request: "listeners" })` is a
 *  `ListenerList`. With `host` (a `[hosts]` Mac's name), this Mac's daemon forwards it there with the token
 *  it holds, and that daemon answers with the same rules. Rejects with a `CommandError`. A new request
 *  needs nothing here: its Rust type, its handler, and its use. */
export function call<K extends Tag>(request: RequestOf<K>, host: string | null = null): Promise<Replies[K]> {
  const req: Request = host === null ? request : { request: "host", host, forward: request };
  return invoke<Replies[K]>("call", { request: req });
}

/** `call`, with a "none" answer (404: no such run going) as null. */
export async function callOrNull<K extends Tag>(request: RequestOf<K>): Promise<Replies[K] | null> {
  try {
    return await call(request);
  } catch (e) {
    if (asCommandError(e).kind === "not_found") return null;
    throw e;
  }
}

export const followLogs = (name: string) => invoke<null>("follow_logs", { name });
export const unfollowLogs = (name: string) => invoke<null>("unfollow_logs", { name });
export const getConnection = () => invoke<Connection>("get_connection");
export const startDaemon = () => invoke<Connection>("start_daemon");
/** Opens (or focuses) a view's own window; `query` says what to show there (`target=chat`, `doctor`). */
export const openView = (view: "dashboard" | "settings" | "bench" | "chat", query: string | null = null) =>
  invoke<null>("open_view", { view, query });
/** Streams a reply through the daemon's frontends as `chat-event`s to this window (see `onChatEvent`). */
export const chatSend = (request: ChatSend) => invoke<null>("chat_send", { request });
export const chatCancel = (id: string) => invoke<null>("chat_cancel", { id });
/** A speech service's audio for `text`, as a `data:` URL. */
export const chatSpeech = (target: string, text: string) => invoke<string>("chat_speech", { target, text });
/** A speech-to-text service's transcript of `audio` (a `data:` URL). */
export const chatTranscribe = (target: string, audio: string, fileName: string) =>
  invoke<string>("chat_transcribe", { target, audio, fileName });
/** Closes this window as its close button does (⌘W): the app asks the page first when it holds unsaved
 *  edits (`set_unsaved`). */
export const closeWindow = () => invoke<null>("close_window");
/** Tells the app this window has drawn its first frame with data (the app times open → drawn). */
export const windowReady = () => invoke<null>("window_ready");
/** Tells the app whether this window holds unsaved edits: while it does, closing it emits `close-asked`
 *  (see `onCloseAsked`) instead of hiding it. */
export const setUnsaved = (unsaved: boolean) => invoke<null>("set_unsaved", { unsaved });
/** Hides this window (what closing it does when nothing is unsaved). */
export const hideWindow = () => invoke<null>("hide_window");
/** The system's open panel for one file or folder: its path, or null when cancelled. */
export async function choosePath(opts: { directory: boolean; defaultPath?: string }): Promise<string | null> {
  const chosen = await open({ directory: opts.directory, multiple: false, defaultPath: opts.defaultPath });
  return typeof chosen === "string" ? chosen : null;
}

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
export const onChatEvent = (cb: (e: ChatEvent) => void): Promise<UnlistenFn> => on<ChatEvent>("chat-event", cb);
/** What the app asked this window to show when it was open already (`open_view`'s query). */
export const onWindowQuery = (cb: (q: string) => void): Promise<UnlistenFn> => on<string>("window-query", cb);
/** The user closed this window while it had unsaved edits (the app kept it open: see `setUnsaved`). Only
 *  this window's: the app emits it to the window being closed. */
export const onCloseAsked = (cb: () => void): Promise<UnlistenFn> =>
  getCurrentWebviewWindow()
    .listen<null>("close-asked", () => cb())
    .then(quiet);
export const onFocusAlert = (cb: (f: FocusAlert) => void): Promise<UnlistenFn> =>
  on<FocusAlert>("focus-alert", cb);

/** Any rejection as a CommandError (a plain string or Error becomes kind "failed"). */
export function asCommandError(e: unknown): CommandError {
  if (e && typeof e === "object" && "kind" in e && "message" in e) {
    const c = e as Partial<CommandError> & Pick<CommandError, "kind" | "message">;
    return { kind: c.kind, message: c.message, hint: c.hint ?? null, preview: c.preview ?? null };
  }
  const message = e instanceof Error ? e.message : typeof e === "string" ? e : JSON.stringify(e);
  return { kind: "failed", message, hint: null, preview: null };
}

/** What a window shows of a rejection: the daemon's message, then what to do when it said. */
export function errorText(e: unknown): string {
  const c = asCommandError(e);
  return c.hint ? `${c.message}; ${c.hint}` : c.message;
}

/** `PATH:LINE:COL: severity: message (hint)`, exactly as `mlx-box validate` prints it. */
export function formatDiagnostic(d: Diagnostic): string {
  return `${d.path}:${d.line}:${d.col}: ${d.severity}: ${d.message}${d.hint ? ` (${d.hint})` : ""}`;
}
