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

/// Why a pull stopped, each saying what to do. Whatever it is, nothing partial is in `snapshots/`; a
/// partial blob stays in `blobs/` to be continued.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("`{id}` is not a repository id: write it as ORG/NAME (letters, digits, `-`, `_`, `.`), as on the Hub")]
    BadId { id: String },
    #[error("no repository {id} on {endpoint}: check the id (the Hub's page is {endpoint}/{id})")]
    NotFound { id: String, endpoint: String },
    #[error("{id} has no revision `{rev}`: check the branch, tag or commit after the `@`")]
    NoRevision { id: String, rev: String },
    #[error("{id} has no file `{file}` at that revision")]
    NoFile { id: String, file: String },
    #[error("{id} is gated or private on {endpoint}{}", if *token { ": accept its licence on the Hub with the account whose token mlx-box uses (or check the token's access)" } else { ": accept its licence on the Hub, then `mlx-box models login` (or set HF_TOKEN)" })]
    Gated {
        id: String,
        endpoint: String,
        token: bool,
    },
    #[error("{url} answered HTTP {status}: try again later, or check HF_ENDPOINT")]
    Http { url: String, status: u16 },
    #[error("{url} sent what mlx-box cannot use ({detail}): check HF_ENDPOINT points at a Hugging Face Hub")]
    BadReply { url: String, detail: String },
    #[error("cannot reach {what}: {detail} (the pull continues where it stopped when run again)")]
    Network { what: String, detail: String },
    #[error("{what}: the server sent nothing for {secs:.0} s (stalled): run the pull again, it continues where it stopped")]
    Stalled { what: String, secs: f64 },
    #[error("{file}: {got} bytes where the Hub says {expected}: the partial file was removed; run the pull again")]
    Size {
        file: String,
        expected: u64,
        got: u64,
    },
    #[error("{file}: sha256 {got} where the Hub says {expected}: the download is corrupt and was not placed (removed); run the pull again, and if it repeats suspect a proxy or mirror")]
    Corrupt {
        file: String,
        expected: String,
        got: String,
    },
    #[error("the disk is full writing {path} ({detail}): free space (`mlx-box models du` names what no service uses), then run the pull again")]
    DiskFull { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is being downloaded by another process (a pull or huggingface_hub): wait for it, or stop it")]
    Busy { path: PathBuf },
    #[error("no file of {id} matches --include / --exclude")]
    NothingMatches { id: String },
    #[error("bad glob `{glob}`: {detail}")]
    BadGlob { glob: String, detail: String },
    #[error("{0} (--force fetches anyway)")]
    WontFit(String),
}

impl PullError {
    /// An I/O error at `path`, a full disk said as such.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> PullError {
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => PullError::DiskFull {
                path: path.to_path_buf(),
                detail: source.to_string(),
            },
            _ => PullError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}
