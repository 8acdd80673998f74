//! Benchmark runs as they are saved and served: options, results, progress, comparisons, the doctor's
//! checklist. Pure data and pure functions of it; the engine that produces them is `mlxbox_core::bench`.

pub mod compare;
pub mod doctor;
pub mod report;
mod stats;

pub use compare::{compare, load_difference, CompareRow, Comparison};
pub use doctor::{DoctorCheck, DoctorOptions, DoctorReport};
pub use report::*;
pub use stats::{percentile, Stats};
