//! mlx-box core: the daemon and everything it does, with no GUI dependency. The wire types are in
//! `mlxbox-api`; clients (the CLI's commands, the menu-bar app) speak to the daemon through `mlxbox-client`.
//! Where each piece of state lives and how requests flow: docs/ARCHITECTURE.md.

pub mod alerts;
pub mod api;
pub mod audio;
pub mod autostart;
pub mod bench;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod estimate;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod keys;
pub mod launch;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod monitor;
pub mod paths;
pub mod power;
pub mod proxy;
pub mod reasoning;
pub mod remote;
pub mod rules;
pub mod served;
pub mod services;
pub mod supervisor;
pub mod task;
pub mod tcp_face;
pub mod tls;
