// Small display helpers.

export function bytes(n: number | null | undefined): string {
  if (n == null) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export function ago(sinceMs: number, nowMs: number): string {
  return `${duration(nowMs - sinceMs)} ago`;
}

export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString();
}

/** A date from unix seconds, e.g. "Jan 5, 2025". */
export function day(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

/** A model as the tables show it: a Hugging Face id as it is; a local path by its last two parts (the
 * directories above it say where this machine keeps files, not what the model is). The full text stays
 * in the cell's title. */
export function modelName(model: string | null | undefined): string {
  if (!model) return "—";
  // A Hugging Face cache snapshot (…/models--ORG--NAME/snapshots/REV[/…]) is that repository's id.
  const hf = /(?:^|\/)models--([^/]+?)--([^/]+)\/snapshots\//.exec(model);
  if (hf) return `${hf[1]}/${hf[2]}`;
  if (!model.startsWith("/") && !model.startsWith("~") && !model.startsWith(".")) return model;
  const parts = model.split("/").filter((p) => p && p !== "." && p !== "~");
  return parts.length <= 2 ? model : `…/${parts.slice(-2).join("/")}`;
}
