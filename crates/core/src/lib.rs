//! mlx-box core: everything the daemon does, with no GUI dependency. `crates/cli` and `src-tauri` are thin
//! clients of this crate.

pub mod alerts;
pub mod api;
pub mod app;
pub mod bench;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod estimate;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod launch;
pub mod limits;
pub mod menubar;
pub mod monitor;
pub mod paths;
pub mod proxy;
pub mod reasoning;
pub mod rules;
pub mod supervisor;
pub mod task;
