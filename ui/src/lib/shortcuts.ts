// The keyboard shortcuts every window answers: ⌘, settings, ⌘1–3 the windows, ⌘W close, ⌘F the page's
// filter, ⌘R restart the selected service (the dashboard), ⌘S save (the Settings window's own). On macOS
// the app menu (src-tauri/src/app_menu.rs) takes ⌘, ⌘1–3 and ⌘W first; elsewhere Ctrl does the same here.
import * as api from "./api";

export type Shortcut = "settings" | "dashboard" | "bench" | "chat" | "close" | "find" | "restart" | "save";

export const isMac = typeof navigator !== "undefined" && /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
/** How the modifier is written in labels: "⌘" on a Mac, "Ctrl+" elsewhere. */
export const MOD = isMac ? "⌘" : "Ctrl+";

const KEYS: Record<string, Shortcut> = {
  ",": "settings",
  "1": "dashboard",
  "2": "bench",
  "3": "chat",
  w: "close",
  f: "find",
  r: "restart",
  s: "save",
};

/** The shortcut a key press is, if any: the platform's modifier (⌘ on a Mac, Ctrl elsewhere) and a key,
 *  nothing else held. */
export function shortcutOf(e: Pick<KeyboardEvent, "key" | "metaKey" | "ctrlKey" | "altKey" | "shiftKey">, mac = isMac): Shortcut | null {
  const mod = mac ? e.metaKey && !e.ctrlKey : e.ctrlKey && !e.metaKey;
  if (!mod || e.altKey || e.shiftKey) return null;
  return KEYS[e.key.toLowerCase()] ?? null;
}

/** Page-specific shortcuts (find, restart, save) reach the page as this DOM event, with the shortcut as
 *  its detail; it calls `preventDefault()` on it when it acted. */
export const SHORTCUT_EVENT = "mlxbox-shortcut";

/** Answers the shortcuts in this window; returns the remover. */
export function installShortcuts(): () => void {
  const onKey = (e: KeyboardEvent) => {
    const s = shortcutOf(e);
    if (!s) return;
    switch (s) {
      case "settings":
      case "dashboard":
      case "bench":
      case "chat":
        e.preventDefault();
        void api.openView(s).catch(() => {});
        return;
      case "close":
        e.preventDefault();
        void api.closeWindow().catch(() => {});
        return;
      case "find": {
        const field = document.querySelector<HTMLElement>("[data-find]");
        if (field) {
          e.preventDefault();
          field.focus();
        }
        return;
      }
      default: {
        // ⌘R would reload the page: never let it, whether or not the page acts on it.
        if (s === "restart") e.preventDefault();
        const ev = new CustomEvent<Shortcut>(SHORTCUT_EVENT, { detail: s, cancelable: true });
        if (!window.dispatchEvent(ev)) e.preventDefault();
      }
    }
  };
  window.addEventListener("keydown", onKey);
  return () => window.removeEventListener("keydown", onKey);
}
