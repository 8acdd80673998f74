// The Settings window's fields, made from the settings schema that the daemon's parser also uses
// (crates/api/src/settings.rs → settingsSchema.generated.ts). The daemon validates; these only choose the
// input and show the defaults and ranges as help.
import type { KeySpec } from "../bindings/KeySpec";
import { SETTINGS_SCHEMA } from "./settingsSchema.generated";

export type FieldType = "string" | "int" | "float" | "bool" | "enum" | "argv" | "env" | "scalar";

export interface FieldSpec {
  key: string;
  type: FieldType;
  label?: string;
  options?: string[];
  /** Suggestions for a free string (a datalist). */
  suggest?: string[];
  default?: string | number | boolean;
  /** What an absent enum means when there is no fixed default. */
  absent?: string;
  help: string;
}

export interface Group {
  title: string;
  fields: FieldSpec[];
}

function field(k: KeySpec): FieldSpec {
  const f: FieldSpec = { key: k.key, type: k.type === "port" ? "int" : (k.type as FieldType), help: k.help };
  if (k.options.length) f.options = k.options;
  if (k.suggest.length) f.suggest = k.suggest;
  if (k.default != null) f.default = k.default;
  if (k.absent != null) f.absent = k.absent;
  return f;
}

const inSection = (section: KeySpec["section"]) => SETTINGS_SCHEMA.filter((k) => k.section === section);
const fieldsOf = (section: KeySpec["section"]) =>
  inSection(section)
    .filter((k) => k.type !== "secret")
    .map(field);

export const SERVER_FIELDS: FieldSpec[] = fieldsOf("server");
/** [server] keys shown as a note only (the keyring holds API keys). */
export const SERVER_SECRET_KEYS = inSection("server")
  .filter((k) => k.type === "secret")
  .map((k) => k.key);
export const APP_FIELDS: FieldSpec[] = fieldsOf("app");
export const ALERT_FIELDS: FieldSpec[] = fieldsOf("alerts");
export const METRICS_FIELDS: FieldSpec[] = fieldsOf("metrics");
export const CONTROL_FIELDS: FieldSpec[] = fieldsOf("control");
/** The keys of one [hosts.NAME] table. */
export const HOST_FIELDS: FieldSpec[] = fieldsOf("hosts");
export const POOL_FIELDS: FieldSpec[] = fieldsOf("pools");
export const KINDS = SETTINGS_SCHEMA.find((k) => k.section === "services" && k.key === "kind")?.options ?? [];

/** The service keys by the schema's groups, in its order. */
export const SERVICE_GROUPS: Group[] = inSection("services").reduce<Group[]>((groups, k) => {
  const last = groups[groups.length - 1];
  if (last && last.title === k.group) last.fields.push(field(k));
  else groups.push({ title: k.group, fields: [field(k)] });
  return groups;
}, []);

export const SERVICE_FIELDS: FieldSpec[] = SERVICE_GROUPS.flatMap((g) => g.fields);

export const SECTION_FIELDS: Record<string, FieldSpec[]> = {
  server: SERVER_FIELDS,
  app: APP_FIELDS,
  alerts: ALERT_FIELDS,
  metrics: METRICS_FIELDS,
  control: CONTROL_FIELDS,
};

/** The spec of a key path (["app","log_files"], ["services","chat","port"]), if the form has a field for it. */
export function fieldFor(path: string[]): FieldSpec | undefined {
  if (path[0] === "services" && path.length === 3) return SERVICE_FIELDS.find((f) => f.key === path[2]);
  if (path[0] === "hosts" && path.length === 3) return HOST_FIELDS.find((f) => f.key === path[2]);
  if (path[0] === "pools" && path.length === 3) return POOL_FIELDS.find((f) => f.key === path[2]);
  if (path.length === 2) return SECTION_FIELDS[path[0]]?.find((f) => f.key === path[1]);
  return undefined;
}
