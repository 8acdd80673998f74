// Which key sits on which line of a settings.toml text: enough of TOML to place a diagnostic (which carries
// only a line and a column) next to its field. Table headers map to the table's path; a `key = value`
// line (and the continuation lines of a multi-line array, inline table or string) to the key's path.

/** Splits a (possibly dotted, possibly quoted) key into its parts. */
export function splitKey(key: string): string[] {
  const parts: string[] = [];
  let cur = "";
  let quote: string | null = null;
  for (let i = 0; i < key.length; i++) {
    const c = key[i];
    if (quote) {
      if (c === "\\" && quote === '"' && i + 1 < key.length) cur += key[++i];
      else if (c === quote) quote = null;
      else cur += c;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === ".") {
      parts.push(cur.trim());
      cur = "";
    } else cur += c;
  }
  parts.push(cur.trim());
  return parts;
}

/** Index of the first `=` outside quotes, or -1. */
function eqIndex(line: string): number {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "=") return i;
    else if (c === "#") return -1;
  }
  return -1;
}

type Scan = { depth: number; triple: string | null };

/** Scans part of a value, carrying bracket depth and an open multi-line string across lines. */
function scanValue(s: string, st: Scan): Scan {
  let { depth, triple } = st;
  let i = 0;
  while (i < s.length) {
    if (triple) {
      const end = s.indexOf(triple, i);
      if (end < 0) return { depth, triple };
      i = end + 3;
      triple = null;
      continue;
    }
    const c = s[i];
    if (s.startsWith('"""', i) || s.startsWith("'''", i)) {
      triple = s.slice(i, i + 3);
      i += 3;
      continue;
    }
    if (c === "#") break;
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < s.length && s[j] !== c) j += c === '"' && s[j] === "\\" ? 2 : 1;
      i = j + 1;
      continue;
    }
    if (c === "[" || c === "{") depth++;
    else if (c === "]" || c === "}") depth--;
    i++;
  }
  return { depth, triple };
}

/** Line number (1-based) → key path, for every line that belongs to a key or a table header. */
export function keyLines(text: string): Map<number, string[]> {
  const out = new Map<number, string[]>();
  let table: string[] = [];
  let cont: { path: string[]; scan: Scan } | null = null;
  text.split(/\r?\n/).forEach((raw, i) => {
    const ln = i + 1;
    if (cont) {
      out.set(ln, cont.path);
      cont.scan = scanValue(raw, cont.scan);
      if (cont.scan.depth <= 0 && !cont.scan.triple) cont = null;
      return;
    }
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const header = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(line);
    if (header && eqIndex(line) < 0) {
      table = splitKey(header[1]);
      out.set(ln, table);
      return;
    }
    const eq = eqIndex(line);
    if (eq < 0) return;
    const path = [...table, ...splitKey(line.slice(0, eq))];
    out.set(ln, path);
    const scan = scanValue(line.slice(eq + 1), { depth: 0, triple: null });
    if (scan.depth > 0 || scan.triple) cont = { path, scan };
  });
  return out;
}
