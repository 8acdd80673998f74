//! The Hugging Face Hub's HTTP API, the part a download needs: a repository's info at a revision
//! (`/api/models/{id}/revision/{rev}?blobs=true`: the commit, every file with its size and, for an LFS
//! file, its sha256) and a file's bytes (`/{id}/resolve/{commit}/{path}`, from an offset with `Range`).
//!
//! Why not the `hf-hub` crate (read at 0.5.0 and 1.0.0): neither resumes the way the shared cache
//! needs nor verifies anything. 0.5 keeps its own `.incomplete` format (pre-sized, a trailing 8-byte
//! offset) at the very path `huggingface_hub` appends to with `Range: bytes=N-`, so a pull interrupted
//! by one and continued by the other (mlx_lm.server downloads into the same cache) is corrupted; with
//! its default chunk size it also holds a whole file in memory and restarts it from zero. 1.0 always
//! GETs the whole file and pulls in hf-xet. Neither checks the LFS sha256 nor times out a stalled read.
//! So the two routes are called here with the workspace's reqwest, and `pull.rs` writes
//! `huggingface_hub`'s own layout and partial files.

use super::error::PullError;
use futures_util::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// A repository's info (a file list of 100,000 entries is ~20 MB).
pub const MAX_INFO: u64 = 64 << 20;
/// Files of a repository taken at most.
pub const MAX_FILES: usize = 100_000;
/// A file's size believed at most (1 TiB: no single safetensors shard is near it).
pub const MAX_FILE_SIZE: u64 = 1 << 40;
/// How long a download waits for its next bytes before calling the server stalled.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A path segment as `huggingface_hub` quotes it (`quote(x, safe="")`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One file of a repository at a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteFile {
    /// Relative to the repository's root (checked: no `..`, no leading `/`).
    pub path: String,
    pub size: u64,
    /// The blob's name in the cache: the LFS sha256, else the git blob id (what `huggingface_hub`
    /// names it after, the `X-Linked-Etag` / `ETag` of the resolve route).
    pub etag: String,
    /// An LFS file's sha256, checked after the download.
    pub sha256: Option<String>,
}

/// A repository at one commit.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub id: String,
    pub commit: String,
    pub files: Vec<RemoteFile>,
}

/// The Hub (or a mirror: `HF_ENDPOINT`), with the user's token if any.
#[derive(Clone)]
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    client: reqwest::Client,
    read_timeout: Duration,
}

impl Hub {
    /// `endpoint` (else `$HF_ENDPOINT`, else huggingface.co); `read_timeout`: the wait for the next
    /// bytes of a reply before it is called stalled.
    pub fn new(
        endpoint: Option<String>,
        token: Option<String>,
        read_timeout: Duration,
    ) -> Result<Hub, PullError> {
        crate::tls::install_crypto_provider();
        let endpoint = endpoint
            .or_else(|| std::env::var("HF_ENDPOINT").ok())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(read_timeout)
            .user_agent(concat!("mlx-box/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PullError::Network {
                what: "the HTTP client".into(),
                detail: e.to_string(),
            })?;
        Ok(Hub {
            endpoint,
            token: token.filter(|t| !t.is_empty()),
            client,
            read_timeout,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let r = self.client.get(url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// The commit `rev` names and every file there.
    pub async fn info(&self, id: &str, rev: &str) -> Result<RepoInfo, PullError> {
        check_id(id)?;
        let url = format!(
            "{}/api/models/{}/revision/{}?blobs=true",
            self.endpoint,
            id,
            utf8_percent_encode(rev, SEGMENT)
        );
        let resp = self.send(id, rev, None, self.get(&url)).await?;
        let body = self.read_capped(resp, MAX_INFO, &url).await?;
        parse_info(id, &body).map_err(|detail| PullError::BadReply { url, detail })
    }

    /// A small file (config.json, the safetensors index) into memory, at most `max` bytes.
    pub async fn small_file(
        &self,
        id: &str,
        commit: &str,
        path: &str,
        max: u64,
    ) -> Result<Vec<u8>, PullError> {
        let url = self.file_url(id, commit, path);
        let resp = self.send(id, commit, Some(path), self.get(&url)).await?;
        self.read_capped(resp, max, &url).await
    }

    /// A file's bytes from `from` on. The answer's offset is `from` when the server honoured the
    /// `Range`, 0 when it sent the whole file.
    pub async fn open(
        &self,
        id: &str,
        commit: &str,
        path: &str,
        from: u64,
    ) -> Result<(reqwest::Response, u64), PullError> {
        let url = self.file_url(id, commit, path);
        let mut req = self.get(&url);
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let resp = self.send(id, commit, Some(path), req).await?;
        let offset = if resp.status() == reqwest::StatusCode::PARTIAL_CONTENT {
            from
        } else {
            0
        };
        Ok((resp, offset))
    }

    fn file_url(&self, id: &str, commit: &str, path: &str) -> String {
        let path: Vec<String> = path
            .split('/')
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            id,
            utf8_percent_encode(commit, SEGMENT),
            path.join("/")
        )
    }

    /// Sends, and turns a refusal into what it means (the Hub says which in `X-Error-Code`).
    async fn send(
        &self,
        id: &str,
        rev: &str,
        file: Option<&str>,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, PullError> {
        let resp = req.send().await.map_err(|e| self.network(id, file, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let code = resp
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let endpoint = self.endpoint.clone();
        let id = id.to_string();
        Err(match (code.as_str(), status.as_u16()) {
            ("RevisionNotFound", _) => PullError::NoRevision {
                id,
                rev: rev.into(),
            },
            ("EntryNotFound", _) => PullError::NoFile {
                id,
                file: file.unwrap_or_default().into(),
            },
            ("GatedRepo", _) | ("", 401 | 403) => PullError::Gated {
                id,
                endpoint,
                token: self.token.is_some(),
            },
            ("RepoNotFound", _) | (_, 404) => PullError::NotFound { id, endpoint },
            _ => PullError::Http {
                url: resp.url().to_string(),
                status: status.as_u16(),
            },
        })
    }

    fn network(&self, id: &str, file: Option<&str>, e: &reqwest::Error) -> PullError {
        let what = match file {
            Some(f) => format!("{id}/{f}"),
            None => format!("{id} on {}", self.endpoint),
        };
        if e.is_timeout() {
            return PullError::Stalled {
                what,
                secs: self.read_timeout.as_secs_f64(),
            };
        }
        // The cause chain says what went wrong (refused, reset, DNS); reqwest's top line does not.
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            detail = format!("{detail}: {s}");
            src = s.source();
        }
        PullError::Network { what, detail }
    }

    async fn read_capped(
        &self,
        resp: reqwest::Response,
        max: u64,
        url: &str,
    ) -> Result<Vec<u8>, PullError> {
        let too_large = || PullError::BadReply {
            url: url.to_string(),
            detail: format!("more than {max} bytes"),
        };
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        loop {
            let next = tokio::time::timeout(self.read_timeout, stream.next())
                .await
                .map_err(|_| PullError::Stalled {
                    what: url.to_string(),
                    secs: self.read_timeout.as_secs_f64(),
                })?;
            match next {
                None => return Ok(out),
                Some(Ok(chunk)) => {
                    if (out.len() + chunk.len()) as u64 > max {
                        return Err(too_large());
                    }
                    out.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(self.network(url, None, &e)),
            }
        }
    }
}

/// `ORG/NAME`: two plain segments (they become a URL path and a directory name).
pub fn check_id(id: &str) -> Result<(), PullError> {
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && !s.starts_with('-')
            && s.len() <= 96
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match id.split_once('/') {
        // `--` and `..` as huggingface_hub refuses them (`--` is the cache's separator).
        Some((org, name)) if ok(org) && ok(name) && !id.contains("--") && !id.contains("..") => {
            Ok(())
        }
        _ => Err(PullError::BadId { id: id.into() }),
    }
}

/// A file path from the network: relative, no `..`, no empty or `.` segment, no backslash or NUL.
pub fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 1024
        && !p.contains(['\\', '\0'])
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The info route's JSON: `sha` and `siblings` (`rfilename`, `size`, `blobId`, `lfs.sha256`).
fn parse_info(id: &str, body: &[u8]) -> Result<RepoInfo, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let commit = v
        .get("sha")
        .and_then(|s| s.as_str())
        .filter(|s| is_hex(s, 40))
        .ok_or("no commit `sha` (40 hex digits)")?
        .to_ascii_lowercase();
    let siblings = v
        .get("siblings")
        .and_then(|s| s.as_array())
        .ok_or("no `siblings` list")?;
    if siblings.len() > MAX_FILES {
        return Err(format!(
            "{} files, more than the {MAX_FILES} a pull takes",
            siblings.len()
        ));
    }
    let mut files = Vec::with_capacity(siblings.len());
    for s in siblings {
        let path = s
            .get("rfilename")
            .and_then(|p| p.as_str())
            .ok_or("a sibling without `rfilename`")?;
        if !safe_path(path) {
            return Err(format!("unsafe file path {path:?}"));
        }
        let lfs = s.get("lfs").filter(|l| l.is_object());
        let sha256 = lfs
            .and_then(|l| l.get("sha256"))
            .and_then(|h| h.as_str())
            .map(|h| h.to_ascii_lowercase());
        if let Some(h) = &sha256 {
            if !is_hex(h, 64) {
                return Err(format!("{path}: lfs.sha256 {h:?} is not 64 hex digits"));
            }
        }
        let size = lfs
            .and_then(|l| l.get("size"))
            .or_else(|| s.get("size"))
            .and_then(|n| n.as_u64())
            .ok_or_else(|| format!("{path}: no size (does the endpoint support `blobs=true`?)"))?;
        if size > MAX_FILE_SIZE {
            return Err(format!("{path}: size {size} is past {MAX_FILE_SIZE}"));
        }
        let etag = match &sha256 {
            Some(h) => h.clone(),
            None => s
                .get("blobId")
                .and_then(|b| b.as_str())
                .filter(|b| is_hex(b, 40))
                .ok_or_else(|| format!("{path}: no `blobId` (40 hex digits)"))?
                .to_ascii_lowercase(),
        };
        files.push(RemoteFile {
            path: path.to_string(),
            size,
            etag,
            sha256,
        });
    }
    Ok(RepoInfo {
        id: id.to_string(),
        commit,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_checked_before_it_names_anything() {
        let ok = br#"{"sha":"ABCDEF0123456789abcdef0123456789abcdef01","siblings":[
            {"rfilename":"config.json","size":10,"blobId":"0123456789abcdef0123456789abcdef01234567"},
            {"rfilename":"w/model.safetensors","size":5,"blobId":"1123456789abcdef0123456789abcdef01234567",
             "lfs":{"sha256":"aa23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":99}}]}"#;
        let i = parse_info("o/n", ok).unwrap();
        assert_eq!(i.commit, "abcdef0123456789abcdef0123456789abcdef01");
        assert_eq!(i.files[0].etag, "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(i.files[1].size, 99);
        assert_eq!(i.files[1].etag, i.files[1].sha256.clone().unwrap());
        for bad in [
            r#"{"sha":"x","siblings":[]}"#,
            r#"{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[{"rfilename":"../x","size":1,"blobId":"0123456789abcdef0123456789abcdef01234567"}]}"#,
            r#"{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[{"rfilename":"x","size":1,"blobId":"../../etc"}]}"#,
            r#"{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[{"rfilename":"x","blobId":"0123456789abcdef0123456789abcdef01234567"}]}"#,
        ] {
            assert!(parse_info("o/n", bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_two_plain_segments() {
        for ok in ["mlx-community/Qwen3-0.6B-4bit", "a/b", "o_1/n.2"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a", "a/b/c", "../a", "a/..", "a/b c", "/a", "a--b/c", "-a/b",
        ] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
