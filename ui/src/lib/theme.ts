// Light or dark, as the system's appearance says (and when it changes): `data-theme` on the root element,
// which app.css keys its colours on. One place decides, so a screenshot (or a future preference) can set
// the attribute and every colour follows.
export function followSystemTheme(root: HTMLElement = document.documentElement): () => void {
  const media = typeof window.matchMedia === "function" ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  const apply = () => (root.dataset.theme = media?.matches ? "dark" : "light");
  apply();
  media?.addEventListener?.("change", apply);
  return () => media?.removeEventListener?.("change", apply);
}
