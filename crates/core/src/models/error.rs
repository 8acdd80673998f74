//! Why a model could not be read or removed, each saying what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is {size} bytes, more than the {max} a model's {what} may be: not read (replace the file, or remove the model)")]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        size: u64,
        max: u64,
    },
    #[error("{path} is not a regular file: not read")]
    NotAFile { path: PathBuf },
    #[error("{path} is not valid JSON ({detail}): the download may be damaged; remove the model and fetch it again")]
    NotJson { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Malformed { path: PathBuf, detail: String },
    #[error("no model `{id}` in {hubs}: `mlx-box models` lists what is there")]
    NotFound { id: String, hubs: String },
    #[error("`{id}` is used by {services}: point their `model` elsewhere in settings.toml (or remove them) first")]
    InUse { id: String, services: String },
    #[error("`{id}` has no revision `{rev}`; it has {have}")]
    NoSuchRevision {
        id: String,
        rev: String,
        have: String,
    },
    #[error("`{id}` is a directory named in settings.toml, not a download in the hub cache: mlx-box removes only what is in the cache")]
    NotInCache { id: String },
    #[error("cannot remove {path}: {source} ({freed} bytes were freed before it; run the command again once it is fixed)")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
        freed: u64,
    },
}
