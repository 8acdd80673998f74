// The Settings window's model: the loaded document, the pending edits (key path → value), the daemon's
// preview of them (debounced), save with the base hash, and external changes of the file.
import type { ConfigDocument } from "../bindings/ConfigDocument";
import type { ConfigEdit } from "../bindings/ConfigEdit";
import type { ConfigPreview } from "../bindings/ConfigPreview";
import type { ConfigStatus } from "../bindings/ConfigStatus";
import type { Diagnostic } from "../bindings/Diagnostic";
import type { JsonValue } from "../bindings/serde_json/JsonValue";
import * as api from "./api";
import { fieldFor, isObj, type FieldType } from "./schema";
import { keyLines } from "./tomlLines";

export const PREVIEW_DELAY_MS = 200;

type Json = JsonValue | undefined;

export function getIn(doc: Json | null, path: string[]): Json {
  let v: Json | null = doc;
  for (const k of path) {
    if (v == null || typeof v !== "object" || Array.isArray(v)) return undefined;
    v = (v as Record<string, Json>)[k];
  }
  return v ?? undefined;
}

/** `doc` with the key at `path` set to `value` (null removes it), tables made on the way: a copy. */
export function withKey(doc: Json | null, path: string[], value: JsonValue): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = isObj(doc) ? JSON.parse(JSON.stringify(doc)) : {};
  let t = out;
  for (const k of path.slice(0, -1)) {
    if (!isObj(t[k])) {
      if (value === null) return out; // nothing there to remove
      t[k] = {};
    }
    t = t[k] as Record<string, JsonValue>;
  }
  const last = path[path.length - 1];
  if (value === null) delete t[last];
  else t[last] = value;
  return out;
}

/** The keys of the tables in the table at `path` (["services"] → the service names). */
export function tableNames(doc: Json | null, path: string[]): string[] {
  const t = getIn(doc, path);
  return isObj(t) ? Object.keys(t).filter((k) => isObj(t[k])) : [];
}

const isPrefix = (p: string[], of: string[]) => p.length <= of.length && p.every((k, i) => of[i] === k);

export function same(a: Json, b: Json): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/** The text an input shows for a value. */
export function toText(type: FieldType, v: Json): string {
  if (v == null) return "";
  if (type === "argv" && Array.isArray(v)) return v.map(String).join("\n");
  if (type === "env" && typeof v === "object" && !Array.isArray(v))
    return Object.entries(v)
      .map(([k, x]) => `${k}=${x}`)
      .join("\n");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** The value an input's text stands for; "" removes the key. What does not parse is sent as typed, so that
 *  the daemon's validation (not this form) says what is wrong with it. */
export function fromText(type: FieldType, text: string): JsonValue {
  const t = text.trim();
  if (t === "") return null;
  switch (type) {
    case "int":
    case "float": {
      const n = Number(t);
      return Number.isFinite(n) ? n : t;
    }
    case "scalar":
      if (t === "true" || t === "false") return t === "true";
      return /^[-+]?\d+$/.test(t) ? Number(t) : t;
    case "argv":
      return text.split("\n").filter((l) => l.trim() !== "");
    case "env": {
      const out: Record<string, string> = {};
      for (const line of text.split("\n")) {
        if (!line.trim()) continue;
        const i = line.indexOf("=");
        if (i < 0) out[line.trim()] = "";
        else out[line.slice(0, i).trim()] = line.slice(i + 1);
      }
      return out;
    }
    default:
      return text;
  }
}

export type Notice = { kind: "ok" | "info" | "warn" | "error"; text: string };

export class SettingsForm {
  doc = $state<ConfigDocument | null>(null);
  /** Pending edits, one per key path, in the order they were first made. No edit's path lies under
   *  another's: a key of a table added here is part of that table's edit. */
  edits = $state<ConfigEdit[]>([]);
  /** The document with the pending edits applied: what the form shows. */
  merged = $derived.by(() =>
    this.edits.reduce<Json>((d, e) => withKey(d ?? null, e.path, e.value ?? null), this.doc?.document ?? undefined),
  );
  preview = $state<ConfigPreview | null>(null);
  previewing = $state(false);
  saving = $state(false);
  loading = $state(false);
  notice = $state<Notice | null>(null);
  /** Set when the file changed on disk while there were pending edits: the new hash. */
  externalChange = $state<string | null>(null);
  /** Services whose keys the last save changed. */
  restarted = $state<string[] | null>(null);
  /** Whose settings.toml: null = this Mac's, else a [hosts] Mac's (through this Mac's daemon). */
  host = $state<string | null>(null);

  private timer: ReturnType<typeof setTimeout> | null = null;
  private seq = 0;

  get editList(): ConfigEdit[] {
    return this.edits.map((e) => ({ path: [...e.path], value: e.value }));
  }
  get count(): number {
    return this.edits.length;
  }
  private find(path: string[]): number {
    const k = JSON.stringify(path);
    return this.edits.findIndex((e) => JSON.stringify(e.path) === k);
  }
  get text(): string {
    return this.preview?.text ?? this.doc?.text ?? "";
  }
  get diagnostics(): Diagnostic[] {
    return this.preview?.diagnostics ?? this.doc?.status.diagnostics ?? [];
  }
  get valid(): boolean {
    return this.preview ? this.preview.valid : (this.doc?.status.valid ?? false);
  }
  get canSave(): boolean {
    return this.doc != null && this.count > 0 && !this.saving && !(this.preview && !this.preview.valid);
  }

  /** Each diagnostic with the dotted key path it belongs to (a field, a table, an unknown key), if any. */
  get located(): Located[] {
    return locateDiagnostics(this.diagnostics, this.text);
  }
  /** The diagnostics that belong to each dotted key path. */
  get diagsByPath(): Map<string, Diagnostic[]> {
    return byPath(this.located);
  }

  /** The value of a key: the pending edits', else the file's (undefined when absent). */
  value(path: string[]): Json {
    return getIn(this.merged ?? null, path);
  }
  /** Whether a pending edit sets the key (or adds the table it is in). */
  changed(path: string[]): boolean {
    return this.edits.some((e) => isPrefix(e.path, path));
  }
  /** The names of a table's tables as the form shows them (["services"]: the services, added ones last). */
  tables(path: string[]): string[] {
    return tableNames(this.merged ?? null, path);
  }

  /** Sets a key (null removes it); an edit back to the file's value is dropped. A key of a table added
   *  here goes into that table's edit. */
  set(path: string[], value: JsonValue): void {
    const outer = this.edits.find((e) => e.path.length < path.length && isPrefix(e.path, path));
    if (outer) return this.setTable(outer.path, withKey(outer.value ?? null, path.slice(outer.path.length), value));
    this.put(path, value);
    this.changedNow();
  }

  /** Adds, replaces or (null) removes a whole table, e.g. ["services","chat"]. A table the file has is
   *  changed key by key, so that its header, comments and layout stay; a new one is one edit, which the
   *  daemon writes as a `[services.NAME]` section. */
  setTable(path: string[], table: Record<string, JsonValue> | null): void {
    const orig = getIn(this.doc?.document ?? null, path);
    const keyByKey = table !== null && isObj(orig);
    // What was pending under the table is replaced; the table's own edit keeps its place (if it stays one).
    this.edits = this.edits.filter((e) => !isPrefix(path, e.path) || (!keyByKey && e.path.length === path.length));
    if (keyByKey) for (const k of new Set([...Object.keys(orig), ...Object.keys(table)])) this.put([...path, k], table[k] ?? null);
    else this.put(path, table);
    this.changedNow();
  }

  /** Renames a table (["services","chat"] → "chat-2"): the old one removed, a new one with the same keys. */
  renameTable(path: string[], name: string): void {
    const t = this.value(path);
    if (!isObj(t)) return;
    this.setTable(path, null);
    this.setTable([...path.slice(0, -1), name], t);
  }

  /** One edit at `path`, or none when the file already has `value` there. */
  private put(path: string[], value: JsonValue): void {
    const i = this.find(path);
    const orig = getIn(this.doc?.document ?? null, path);
    if (same(value, orig) || (value === null && orig === undefined)) {
      if (i >= 0) this.edits.splice(i, 1);
    } else if (i >= 0) {
      this.edits[i] = { path, value };
    } else {
      this.edits.push({ path, value });
    }
  }

  private changedNow(): void {
    this.notice = null;
    this.restarted = null;
    this.schedulePreview();
  }

  async load(): Promise<void> {
    this.loading = true;
    try {
      this.doc = await api.call({ request: "get_config" }, this.host);
      this.externalChange = null;
      // Edits that the file now already has are no longer edits.
      const doc = this.doc.document;
      this.edits = this.edits.filter((e) => !same(e.value ?? undefined, getIn(doc, e.path)));
    } catch (e) {
      this.notice = { kind: "error", text: api.errorText(e) };
    } finally {
      this.loading = false;
    }
  }

  /** Edits another host's file (null: this Mac's): pending edits are dropped, that file is read. */
  async switchHost(host: string | null): Promise<void> {
    if (host === this.host) return;
    this.host = host;
    this.notice = null;
    this.restarted = null;
    this.doc = null;
    await this.discard();
  }

  /** Drops every pending edit and re-reads the file. */
  async discard(): Promise<void> {
    this.edits = [];
    this.preview = null;
    this.cancelPreview();
    await this.load();
  }

  schedulePreview(): void {
    this.cancelPreview();
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runPreview();
    }, PREVIEW_DELAY_MS);
  }

  private cancelPreview(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.seq++;
  }

  async runPreview(): Promise<void> {
    const seq = ++this.seq;
    const edits = this.editList;
    if (edits.length === 0) {
      this.preview = null;
      return;
    }
    this.previewing = true;
    try {
      const p = await api.call({ request: "preview_config", edit: { edits, base_hash: null } }, this.host);
      if (seq === this.seq) this.preview = p;
    } catch (e) {
      if (seq !== this.seq) return;
      const err = api.asCommandError(e);
      if (err.preview) this.preview = err.preview;
      else this.notice = { kind: "error", text: api.errorText(e) };
    } finally {
      if (seq === this.seq) this.previewing = false;
    }
  }

  async save(): Promise<void> {
    if (!this.canSave || !this.doc) return;
    this.cancelPreview();
    const edits = this.editList;
    this.saving = true;
    this.notice = null;
    try {
      await api.call({ request: "edit_config", edit: { edits, base_hash: this.doc.content_hash } }, this.host);
      const touched = servicesTouched(edits);
      // What was typed while saving was not sent: it stays pending.
      this.edits = this.edits.filter((e) => !edits.some((s) => same(s.path, e.path) && same(s.value ?? null, e.value ?? null)));
      this.preview = null;
      await this.load();
      if (this.count) this.schedulePreview();
      this.restarted = touched;
      this.notice = {
        kind: "ok",
        text:
          `Saved ${this.doc?.path ?? "settings.toml"}. ` +
          (touched.length
            ? `Restarting only the changed service${touched.length > 1 ? "s" : ""}: ${touched.join(", ")}.`
            : "No service's settings changed, so none restarts."),
      };
    } catch (e) {
      const err = api.asCommandError(e);
      if (err.kind === "conflict") {
        await this.load();
        this.notice = {
          kind: "warn",
          text:
            "settings.toml changed on disk since it was loaded, so nothing was saved. The window now shows the new " +
            `file with your ${this.count} change${this.count === 1 ? "" : "s"} on top: check them and save again.`,
        };
        if (this.count) this.schedulePreview();
        else this.preview = null;
      } else if (err.kind === "invalid" && err.preview) {
        this.preview = err.preview;
        this.notice = { kind: "error", text: err.message };
      } else {
        this.notice = { kind: "error", text: api.errorText(e) };
      }
    } finally {
      this.saving = false;
    }
  }

  /** A `config` daemon event: the file changed (maybe by our own save, recognised by its hash). */
  async external(status: ConfigStatus): Promise<void> {
    // The events are this Mac's: another host's file is re-read when switched to or saved.
    if (this.saving || this.loading || !this.doc || this.host != null) return;
    if (status.content_hash == null || status.content_hash === this.doc.content_hash) return;
    if (this.count === 0) {
      await this.load();
      this.preview = null;
      this.notice = { kind: "info", text: "settings.toml changed on disk: reloaded." };
    } else {
      this.externalChange = status.content_hash;
    }
  }

  dispose(): void {
    this.cancelPreview();
  }
}

/** The services an edit list changes (those the daemon restarts). */
export function servicesTouched(edits: ConfigEdit[]): string[] {
  const s = new Set<string>();
  for (const e of edits) if (e.path[0] === "services" && e.path[1]) s.add(e.path[1]);
  return [...s];
}

/** A diagnostic and the key path it belongs to (null: none found; it is only in the list). */
export type Located = { d: Diagnostic; path: string[] | null };

/** Places each diagnostic at a key path: by the key on its line in `text` (a table header line or a value
 *  deeper than a field goes to the enclosing table/field), else by the `key` and `[table]` its message
 *  names. A header-line message naming a field's key (e.g. "has no `model`") goes to that field. */
export function locateDiagnostics(diags: Diagnostic[], text: string): Located[] {
  const lines = keyLines(text);
  return diags.map((d) => {
    const named = /`([A-Za-z0-9_-]+)`/.exec(d.message)?.[1];
    let p = lines.get(d.line);
    if (p) {
      const depth = p[0] === "services" ? 3 : 2;
      if (p.length > depth) p = p.slice(0, depth);
      if (p.length === depth - 1 && named && fieldFor([...p, named])) p = [...p, named];
      return { d, path: p };
    }
    const table = /\[(services\.[A-Za-z0-9_-]+|server|app|alerts)\]/.exec(d.message)?.[1];
    if (table && named) return { d, path: [...table.split("."), named] };
    return { d, path: table ? table.split(".") : null };
  });
}

function byPath(located: Located[]): Map<string, Diagnostic[]> {
  const out = new Map<string, Diagnostic[]>();
  for (const { d, path } of located) {
    if (!path) continue;
    const k = path.join(".");
    out.set(k, [...(out.get(k) ?? []), d]);
  }
  return out;
}
