//! Bounded reads of a model's small files (config.json, the safetensors index, refs, headers): a file
//! over its cap is refused unread, a FIFO or device in its place is not opened for reading.

use super::error::ModelError;
use std::io::Read;
use std::path::Path;

/// config.json (a real one is a few KB).
pub const MAX_CONFIG: u64 = 4 << 20;
/// `model.safetensors.index.json` (a weight map of a few thousand tensors is ~1 MB).
pub const MAX_INDEX: u64 = 32 << 20;
/// A safetensors header (dtype, shape and offsets of each tensor).
pub const MAX_HEADER: u64 = 32 << 20;
/// A file of `refs/` (a 40-character commit hash).
pub const MAX_REF: u64 = 256;

/// The whole of `path` (symlinks followed, as the hub cache's snapshots are), at most `max` bytes.
pub fn read_capped(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ModelError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > max {
        return Err(ModelError::TooLarge {
            path: path.to_path_buf(),
            what,
            size: meta.len(),
            max,
        });
    }
    let f = open_nonblocking(path).map_err(io)?;
    let mut out = Vec::with_capacity(meta.len() as usize);
    // `take`: a file that grew since the stat is still read no further than the cap.
    f.take(max).read_to_end(&mut out).map_err(io)?;
    Ok(out)
}

/// A JSON file of at most `max` bytes.
pub fn read_json(
    path: &Path,
    max: u64,
    what: &'static str,
) -> Result<serde_json::Value, ModelError> {
    let bytes = read_capped(path, max, what)?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::NotJson {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Opens for reading without blocking on a FIFO swapped in after the stat.
pub fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}
