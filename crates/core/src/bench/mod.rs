//! The benchmark: measures every service the way vLLM's `bench serve` does (streamed requests, TTFT /
//! TPOT / ITL / E2E, closed-loop concurrency levels and an open-loop Poisson rate), checks the thinking
//! toggle and a long context, keeps the history and compares two runs. The daemon runs it for the CLI
//! and the menu-bar app (`POST /v1/bench`, progress on the event stream); `doctor` is the seed's success
//! checklist on top of it.
//!
//! | file | what |
//! |---|---|
//! | `client.rs` | the streaming OpenAI-compatible client (chunk arrival times, usage) and embeddings |
//! | `metrics.rs` | the metric definitions and math (pure) |
//! | `load.rs` | closed-loop and Poisson drivers, prompts with a random prefix |
//! | `checks.rs` | thinking toggle and long-context checks |
//! | `run.rs` | the engine: services → levels → result |
//! | `report.rs` | the result types and thresholds |
//! | `compare.rs` | two runs side by side |
//! | `history.rs` | saved runs in `<state>/bench/<id>.json` |
//! | `machine.rs` | machine info, quantization and context from config.json |
//! | `doctor.rs` | the success checklist |

pub mod checks;
pub mod client;
pub mod doctor;
pub mod history;
pub mod load;
pub mod machine;
pub mod metrics;
pub mod run;
pub mod workload;

pub use mlxbox_api::bench::{compare, report};
pub use mlxbox_api::bench::{CompareRow, Comparison, Stats};
pub use report::*;
pub use run::{run, Hooks, ProgressFn, SampleFn, Target};
