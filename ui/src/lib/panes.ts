// The Settings window's sidebar: which pane shows which keys, grouped as the README explains them.
// A key of a table that no group names still shows, in its pane's last group, so a key added to the
// schema is never left out.
import type { Section } from "../bindings/Section";
import { ALERT_FIELDS, APP_FIELDS, CONTROL_FIELDS, METRICS_FIELDS, SERVER_FIELDS, type FieldSpec } from "./schema";

/** Fields under a title, all of one table. */
export interface TableGroup {
  title: string;
  section: Section;
  fields: FieldSpec[];
}

/** A pane for keys of the single tables ([server], [app], [alerts], [metrics], [control]). */
export interface TablePane {
  id: string;
  title: string;
  about: string;
  groups: TableGroup[];
  /** The tables whose unknown keys and table-wide diagnostics it shows. */
  tables: Section[];
}

/** [app] keys that are about the memory budget: shown with the memory alerts, whose headroom is its reserve. */
const MEMORY_APP_KEYS = ["memory_budget_gb", "refuse_over_budget"];

const pick = (fields: FieldSpec[], keys: string[]) => keys.flatMap((k) => fields.filter((f) => f.key === k));

/** `named` groups of one table's fields, then the rest (but `elsewhere`) under `restTitle`. */
function grouped(section: Section, fields: FieldSpec[], named: [string, string[]][], restTitle: string, elsewhere: string[] = []): TableGroup[] {
  const taken = new Set([...named.flatMap(([, keys]) => keys), ...elsewhere]);
  const rest = fields.filter((f) => !taken.has(f.key));
  return [
    ...named.map(([title, keys]) => ({ title, section, fields: pick(fields, keys) })),
    ...(rest.length ? [{ title: restTitle, section, fields: rest }] : []),
  ];
}

export const TABLE_PANES: TablePane[] = [
  {
    id: "server",
    title: "Server",
    about: "How clients reach the services: the address they bind to, the one endpoint, browsers, timeouts, kept Responses.",
    groups: grouped(
      "server",
      SERVER_FIELDS,
      [
        ["Network", ["host", "port", "domain_name", "cors_origins", "request_timeout_s"]],
        ["Kept Responses (OpenAI Responses API)", ["responses_max_count", "responses_max_mb", "responses_keep_days"]],
      ],
      "Other",
    ),
    tables: ["server"],
  },
  {
    id: "memory",
    title: "Memory & alerts",
    about: "The memory the models may use (on-demand services are loaded and unloaded to fit it), and when memory, swap, heat and links raise alerts.",
    groups: [
      { title: "Memory budget", section: "app", fields: pick(APP_FIELDS, MEMORY_APP_KEYS) },
      { title: "Alerts", section: "alerts", fields: ALERT_FIELDS },
    ],
    tables: ["alerts"],
  },
  {
    id: "app",
    title: "App",
    about: "The menu-bar app, its notifications, keeping the Mac awake, and how the daemon runs the servers' processes and logs.",
    groups: grouped(
      "app",
      APP_FIELDS,
      [
        ["Menu bar & notifications", ["notify_min_severity", "stop_servers_on_quit"]],
        ["Power", ["prevent_sleep"]],
      ],
      "Servers' processes & logs",
      MEMORY_APP_KEYS,
    ),
    tables: ["app"],
  },
  {
    id: "metrics",
    title: "Metrics",
    about: "Prometheus /metrics with vLLM's names (always on the control socket).",
    groups: [{ title: "", section: "metrics", fields: METRICS_FIELDS }],
    tables: ["metrics"],
  },
];

/** The sidebar's entries above the services, in the README's order. */
export const GENERAL_PANES: { id: string; title: string }[] = [
  ...["server", "memory", "app"].map((id) => TABLE_PANES.find((p) => p.id === id)!),
  { id: "keys", title: "API keys" },
  { id: "hosts", title: "Other Macs" },
  { id: "pools", title: "Pools" },
  TABLE_PANES.find((p) => p.id === "metrics")!,
].map(({ id, title }) => ({ id, title }));

/** The Other Macs pane's own table ([control]); its [hosts.NAME] tables follow it. */
export const CONTROL_GROUP: TableGroup = { title: "This Mac's control API", section: "control", fields: CONTROL_FIELDS };

/** The pane of a service. */
export const servicePane = (name: string) => `service-${name}`;

/** The pane that shows a key path (a field, a table, an unknown key); null for a path no pane has. */
export function paneOf(path: string[]): string | null {
  const [section, name] = path;
  if (section === "services") return name ? servicePane(name) : null;
  if (section === "hosts" || section === "control") return "hosts";
  if (section === "pools") return "pools";
  const byField = TABLE_PANES.find((p) => p.groups.some((g) => g.section === section && g.fields.some((f) => f.key === name)));
  if (byField) return byField.id;
  const byTable = TABLE_PANES.find((p) => p.tables.includes(section as Section));
  return byTable ? byTable.id : section ? "other" : null;
}
