//! Models on this Mac: the Hugging Face hub cache as `huggingface_hub` writes it (`cache.rs`), what a
//! model directory says of itself (`info.rs`), the list with the services that use each model
//! (`list.rs`), and their removal (`remove.rs`). Reads are bounded (`read.rs`) and a damaged entry is a
//! problem of that entry. A download (`pull`) is a later part: it writes the layout `cache.rs` reads.

pub mod cache;
pub mod error;
#[cfg(any(test, feature = "fake-hub"))]
#[doc(hidden)]
pub mod fake;
pub mod info;
pub mod list;
pub mod read;
pub mod remove;

pub use error::ModelError;
pub use list::{list, Live};

#[cfg(test)]
mod tests;
