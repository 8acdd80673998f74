// The Settings window's model: the loaded document, the pending edits (key path → value), the daemon's
// preview of them (debounced), save with the base hash, and external changes of the file.
import type { ConfigDocument } from "../bindings/ConfigDocument";
import type { ConfigEdit } from "../bindings/ConfigEdit";
import type { ConfigPreview } from "../bindings/ConfigPreview";
import type { ConfigStatus } from "../bindings/ConfigStatus";
import type { Diagnostic } from "../bindings/Diagnostic";
import type { JsonValue } from "../bindings/serde_json/JsonValue";
import * as api from "./api";
import { fieldFor, type FieldType } from "./schema";
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
  /** Pending edits, one per key path, in the order they were first made. */
  edits = $state<ConfigEdit[]>([]);
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

  /** The diagnostics that belong to each dotted key path (a field, a table, an unknown key). */
  get diagsByPath(): Map<string, Diagnostic[]> {
    return diagnosticsByPath(this.diagnostics, this.text);
  }

  /** The value of a key: the pending edit's, else the file's (undefined when absent). */
  value(path: string[]): Json {
    const i = this.find(path);
    if (i >= 0) return this.edits[i].value ?? undefined;
    return getIn(this.doc?.document ?? null, path);
  }
  changed(path: string[]): boolean {
    return this.find(path) >= 0;
  }

  /** Sets a key (null removes it); an edit back to the file's value is dropped. */
  set(path: string[], value: JsonValue): void {
    const i = this.find(path);
    const orig = getIn(this.doc?.document ?? null, path);
    if (same(value, orig) || (value === null && orig === undefined)) {
      if (i < 0) return;
      this.edits.splice(i, 1);
    } else if (i >= 0) {
      this.edits[i] = { path, value };
    } else {
      this.edits.push({ path, value });
    }
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
      this.edits = [];
      this.preview = null;
      await this.load();
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

/** Places each diagnostic at a dotted key path: by the key on its line in `text` (a table header line or a
 *  value deeper than a field goes to the enclosing table/field), else by the `key` and `[table]` its message
 *  names. A header-line message naming a field's key (e.g. "has no `model`") goes to that field. */
export function diagnosticsByPath(diags: Diagnostic[], text: string): Map<string, Diagnostic[]> {
  const lines = keyLines(text);
  const out = new Map<string, Diagnostic[]>();
  const add = (p: string[], d: Diagnostic) => {
    const k = p.join(".");
    out.set(k, [...(out.get(k) ?? []), d]);
  };
  for (const d of diags) {
    const named = /`([A-Za-z0-9_-]+)`/.exec(d.message)?.[1];
    let p = lines.get(d.line);
    if (p) {
      const depth = p[0] === "services" ? 3 : 2;
      if (p.length > depth) p = p.slice(0, depth);
      if (p.length === depth - 1 && named && fieldFor([...p, named])) p = [...p, named];
      add(p, d);
      continue;
    }
    const table = /\[(services\.[A-Za-z0-9_-]+|server|app|alerts)\]/.exec(d.message)?.[1];
    if (table && named) add([...table.split("."), named], d);
    else if (table) add(table.split("."), d);
  }
  return out;
}
