// Generated from crates/api/src/call.rs by `cargo test -p mlxbox-api export_replies`.
// Do not edit: change the Rust table.
import type { ActionReply } from "./ActionReply";
import type { Alert } from "./Alert";
import type { BenchHistory } from "./BenchHistory";
import type { BenchResult } from "./BenchResult";
import type { BenchStarted } from "./BenchStarted";
import type { Comparison } from "./Comparison";
import type { ConfigDocument } from "./ConfigDocument";
import type { ConfigPreview } from "./ConfigPreview";
import type { Diagnostics } from "./Diagnostics";
import type { DoctorReport } from "./DoctorReport";
import type { Done } from "./Done";
import type { ImportReport } from "./ImportReport";
import type { KeyCount } from "./KeyCount";
import type { KeyInfo } from "./KeyInfo";
import type { KeyList } from "./KeyList";
import type { ListenerList } from "./ListenerList";
import type { LogLines } from "./LogLines";
import type { ModelList } from "./ModelList";
import type { MonitorHistory } from "./MonitorHistory";
import type { NewKey } from "./NewKey";
import type { ProxyStats } from "./ProxyStats";
import type { StatusReport } from "./StatusReport";

/** What each request of the control API answers, by its `request` tag. */
export type Replies = {
  status: StatusReport;
  ping: Done;
  action: ActionReply;
  logs: LogLines;
  get_config: ConfigDocument;
  put_config: Done;
  validate_config: Diagnostics;
  preview_config: ConfigPreview;
  edit_config: ConfigPreview;
  monitor_history: MonitorHistory;
  proxy_stats: { [key in string]?: ProxyStats };
  list_keys: KeyList;
  add_key: NewKey;
  remove_key: KeyInfo;
  reload_keys: KeyCount;
  import_keys: ImportReport;
  bench_start: BenchStarted;
  bench_cancel: BenchStarted;
  bench_current: BenchStarted;
  bench_history: BenchHistory;
  bench_result: BenchResult;
  bench_compare: Comparison;
  doctor: DoctorReport;
  shutdown: Done;
  listeners: ListenerList;
  list_models: ModelList;
  alert_action: Alert;
  /** A request forwarded to another host: what that request answers. */
  host: unknown;
};
