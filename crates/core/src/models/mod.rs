//! Models on this Mac: the Hugging Face hub cache as `huggingface_hub` writes it (`cache.rs`), what a
//! model directory says of itself (`info.rs`), the list with the services that use each model
//! (`list.rs`), their removal (`remove.rs`), and their download: the Hub's API (`hub.rs`), the check
//! that a model fits before its weights are fetched (`fit.rs`), and the pull into the layout
//! `cache.rs` reads (`pull.rs`). Reads are bounded (`read.rs`) and a damaged entry is a problem of
//! that entry.

pub mod cache;
pub mod error;
#[cfg(any(test, feature = "fake-hub"))]
#[doc(hidden)]
pub mod fake;
pub mod fit;
pub mod hub;
pub mod info;
pub mod list;
pub mod pull;
pub mod read;
pub mod remove;

pub use error::{ModelError, PullError};
pub use list::{list, Live};

#[cfg(test)]
mod tests;
