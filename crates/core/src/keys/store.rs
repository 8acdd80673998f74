//! The key store: the keys mlx-box checks but never sends, hashed, in a file of the state dir —
//! `<state>/keys.json` for the proxy's API keys, `<state>/tokens.json` for the remote control API's access
//! tokens (their scope is their role).
//!
//! ```json
//! {"version": 1, "keyring_migrated": true,
//!  "keys": [{"id": "3f9a1c2e", "name": "laptop", "created": 1767225600, "last4": "9b1f", "services": [],
//!            "salt": "<16 bytes, hex>", "sha256": "<SHA-256(salt || key), hex>"}]}
//! ```
//!
//! A key's secret is shown once when it is made and written nowhere: the file holds what is known about
//! each key ([`KeyInfo`]) and what checks it, so a copied state dir gives no usable key. The file is mode
//! 0600, replaced whole (temp file, fsync, rename), read with a size cap ([`MAX_BYTES`]) and an entry cap
//! ([`MAX_ENTRIES`]); a damaged file is a [`StoreError`] that says what to do, never a panic. Every
//! read-modify-write holds an advisory lock (`flock` on `<file>.lock`), so the daemon and a CLI that works
//! without it never lose each other's change.

use super::key::{generate, last4, now_s, random, ApiKey, KeyError, KeyInfo, StoreError, Verifier};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format this version writes and reads.
pub const VERSION: u32 = 1;
/// A file larger than this is refused unread: 1000 entries with long labels fit in a fraction of it.
pub const MAX_BYTES: u64 = 1 << 20;
/// Keys (or tokens) one store keeps at most. Each request is checked against every key, so this also
/// bounds the work of a check.
pub const MAX_ENTRIES: usize = 1000;

/// Which keys a store holds: the proxy's API keys or the control API's access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ApiKeys,
    Tokens,
}

impl Kind {
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::ApiKeys => "keys.json",
            Kind::Tokens => "tokens.json",
        }
    }

    /// What one entry is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::ApiKeys => "API key",
            Kind::Tokens => "access token",
        }
    }

    /// The CLI verb that manages them (`mlx-box keys`, `mlx-box tokens`).
    pub fn cmd(self) -> &'static str {
        match self {
            Kind::ApiKeys => "keys",
            Kind::Tokens => "tokens",
        }
    }
}

/// One key as stored: what is known about it, and its verifier.
#[derive(Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    info: KeyInfo,
    salt: String,
    sha256: String,
}

impl Entry {
    fn new(info: KeyInfo, secret: &str) -> Result<Entry, KeyError> {
        let Verifier::Hashed { salt, hash } = Verifier::hashed(secret)? else {
            unreachable!("Verifier::hashed makes a hashed verifier")
        };
        Ok(Entry {
            info,
            salt: hex::encode(salt),
            sha256: hex::encode(hash),
        })
    }

    fn verifier(&self) -> Option<Verifier> {
        let salt = hex::decode(&self.salt).ok()?.try_into().ok()?;
        let hash = hex::decode(&self.sha256).ok()?.try_into().ok()?;
        Some(Verifier::Hashed { salt, hash })
    }
}

/// The file's content.
#[derive(Serialize, Deserialize)]
pub(crate) struct Doc {
    version: u32,
    /// Whether the keys earlier versions kept in the OS keyring have been moved here (`keys::migrate`):
    /// once they have, the keyring is not asked again.
    #[serde(default)]
    pub(crate) keyring_migrated: bool,
    keys: Vec<Entry>,
}

impl Default for Doc {
    fn default() -> Self {
        Doc {
            version: VERSION,
            keyring_migrated: false,
            keys: vec![],
        }
    }
}

impl Doc {
    /// Whether `secret` is one of the keys held.
    pub(crate) fn holds(&self, secret: &str) -> Option<&KeyInfo> {
        // Every entry hashed (no early exit): import and migration are not timed by clients, but there
        // is no reason to differ from the request path.
        let mut found = None;
        for e in &self.keys {
            if e.verifier().is_some_and(|v| v.matches(secret.as_bytes())) {
                found = found.or(Some(&e.info));
            }
        }
        found
    }

    /// Adds a key with its info as given (a migrated key keeps its id, label and date; an id already
    /// taken gets a new one). The same secret twice is kept once: the held one is returned.
    pub(crate) fn insert(
        &mut self,
        path: &Path,
        mut info: KeyInfo,
        secret: &str,
    ) -> Result<KeyInfo, KeyError> {
        if let Some(held) = self.holds(secret) {
            return Ok(held.clone());
        }
        if self.keys.len() >= MAX_ENTRIES {
            return Err(StoreError::Full {
                path: path.to_path_buf(),
                max: MAX_ENTRIES,
            }
            .into());
        }
        while info.id.is_empty() || self.keys.iter().any(|e| e.info.id == info.id) {
            info.id = new_id()?;
        }
        self.keys.push(Entry::new(info.clone(), secret)?);
        Ok(info)
    }
}

fn new_id() -> Result<String, KeyError> {
    Ok(hex::encode(random::<4>()?))
}

/// A key store file.
#[derive(Debug, Clone)]
pub struct KeyStore {
    path: PathBuf,
    kind: Kind,
}

/// The advisory lock of one store, held while it lives (the kernel drops it with the process).
struct Lock(#[allow(dead_code)] std::fs::File);

impl KeyStore {
    /// The proxy's API keys: `<state>/keys.json`.
    pub fn api_keys(state_dir: &Path) -> KeyStore {
        Self::at(state_dir.join(Kind::ApiKeys.file_name()), Kind::ApiKeys)
    }

    /// The remote control API's access tokens: `<state>/tokens.json`.
    pub fn tokens(state_dir: &Path) -> KeyStore {
        Self::at(state_dir.join(Kind::Tokens.file_name()), Kind::Tokens)
    }

    pub fn at(path: PathBuf, kind: Kind) -> KeyStore {
        KeyStore { path, kind }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn write_err(&self, source: std::io::Error) -> KeyError {
        StoreError::Write {
            path: self.path.clone(),
            source,
        }
        .into()
    }

    /// The file's content; no file is an empty store.
    pub(crate) fn read(&self) -> Result<Doc, KeyError> {
        let path = || self.path.clone();
        let bytes = match crate::paths::read_no_follow(&self.path, MAX_BYTES + 1) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Doc::default()),
            Err(source) => {
                return Err(StoreError::Read {
                    path: path(),
                    source,
                }
                .into())
            }
        };
        if bytes.len() as u64 > MAX_BYTES {
            return Err(StoreError::TooLarge {
                path: path(),
                max: MAX_BYTES,
            }
            .into());
        }
        let damaged = |reason: String| -> KeyError {
            StoreError::Damaged {
                path: path(),
                reason,
            }
            .into()
        };
        // The version first, so a newer format is told apart from a damaged file.
        #[derive(Deserialize)]
        struct Head {
            version: u32,
        }
        let head: Head = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        if head.version != VERSION {
            return Err(StoreError::Version {
                path: path(),
                found: head.version,
                known: VERSION,
            }
            .into());
        }
        let doc: Doc = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        if doc.keys.len() > MAX_ENTRIES {
            return Err(StoreError::TooMany {
                path: path(),
                count: doc.keys.len(),
                max: MAX_ENTRIES,
            }
            .into());
        }
        for e in &doc.keys {
            if e.info.id.is_empty() {
                return Err(damaged("an entry has no id".into()));
            }
            if e.verifier().is_none() {
                return Err(damaged(format!(
                    "entry `{}` has no valid salt and hash",
                    e.info.id
                )));
            }
        }
        Ok(doc)
    }

    /// Replaces the file with `doc`: a temp file (0600) in the same directory, fsync, rename, fsync of the
    /// directory. A symlink in its place is replaced, never followed.
    fn write(&self, doc: &Doc) -> Result<(), KeyError> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir();
        let bytes = serde_json::to_vec_pretty(doc).map_err(|e| self.write_err(e.into()))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".keys-")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(|e| self.write_err(e))?;
        tmp.write_all(&bytes).map_err(|e| self.write_err(e))?;
        tmp.as_file().sync_all().map_err(|e| self.write_err(e))?;
        tmp.persist(&self.path)
            .map_err(|e| self.write_err(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// Takes the store's lock (making the state dir, mode 0700, if it is missing).
    fn lock(&self) -> Result<Lock, KeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.dir();
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| self.write_err(e))?;
            let _ =
                std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        }
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(|e| self.write_err(e))?;
        // SAFETY: a valid descriptor of a file we own; flock has no other precondition.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
            return Err(self.write_err(std::io::Error::last_os_error()));
        }
        Ok(Lock(f))
    }

    /// Reads, changes and writes the file under its lock. Nothing is written when `f` fails.
    pub(crate) fn update<T>(
        &self,
        f: impl FnOnce(&mut Doc) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        let _lock = self.lock()?;
        let mut doc = self.read()?;
        let out = f(&mut doc)?;
        self.write(&doc)?;
        Ok(out)
    }

    /// Every key's info (no secret, no hash).
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(self.read()?.keys.into_iter().map(|e| e.info).collect())
    }

    /// Every key with its verifier (what a listener checks against).
    pub fn load(&self) -> Result<Vec<ApiKey>, KeyError> {
        Ok(self
            .read()?
            .keys
            .into_iter()
            .filter_map(|e| {
                let verifier = e.verifier()?;
                Some(ApiKey {
                    info: e.info,
                    verifier,
                })
            })
            .collect())
    }

    /// Makes a key, stores its hash, and returns it: the only time it is shown.
    pub fn add(
        &self,
        name: Option<&str>,
        services: &[String],
    ) -> Result<(KeyInfo, String), KeyError> {
        let secret = generate()?;
        let info = self.insert(&secret, name, services)?;
        Ok((info, secret))
    }

    /// Stores a given secret (import). The same secret stored twice is kept once.
    pub fn insert(
        &self,
        secret: &str,
        name: Option<&str>,
        services: &[String],
    ) -> Result<KeyInfo, KeyError> {
        let info = KeyInfo {
            id: String::new(),
            name: name.map(str::to_string),
            created: now_s(),
            last4: last4(secret),
            services: services.to_vec(),
        };
        self.update(|doc| doc.insert(&self.path, info, secret))
    }

    /// Removes a key by id (or by its label when that is unique).
    pub fn remove(&self, id_or_name: &str) -> Result<KeyInfo, KeyError> {
        self.update(|doc| {
            let keys = &doc.keys;
            let pos = keys
                .iter()
                .position(|k| k.info.id == id_or_name)
                .or_else(|| {
                    let named: Vec<usize> = (0..keys.len())
                        .filter(|&i| keys[i].info.name.as_deref() == Some(id_or_name))
                        .collect();
                    (named.len() == 1).then(|| named[0])
                })
                .ok_or_else(|| KeyError::NotFound {
                    noun: self.kind.noun(),
                    cmd: self.kind.cmd(),
                    id: id_or_name.to_string(),
                })?;
            Ok(doc.keys.remove(pos).info)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store() -> (tempfile::TempDir, KeyStore) {
        let d = tempfile::tempdir().unwrap();
        let s = KeyStore::api_keys(d.path());
        (d, s)
    }

    fn damaged(s: &KeyStore) -> String {
        match s.load() {
            Err(KeyError::Store(e)) => e.to_string(),
            other => panic!("expected a store error, got {other:?}"),
        }
    }

    #[test]
    fn keys_round_trip_hashed_in_a_0600_file() {
        let (d, s) = store();
        assert!(s.list().unwrap().is_empty(), "no file: no keys");
        let (a, secret_a) = s.add(Some("laptop"), &[]).unwrap();
        let (b, secret_b) = s.add(None, &["embed".into()]).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.last4, &secret_a[secret_a.len() - 4..]);
        assert_eq!(s.list().unwrap(), vec![a.clone(), b.clone()]);
        let keys = s.load().unwrap();
        assert!(keys[0].verifier.matches(secret_a.as_bytes()));
        assert!(!keys[0].verifier.matches(secret_b.as_bytes()));
        assert!(keys[1].verifier.matches(secret_b.as_bytes()));
        assert_eq!(keys[1].info.services, ["embed"]);
        let meta = std::fs::metadata(s.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // The same secret again is kept once; a removal by label or id.
        assert_eq!(s.insert(&secret_a, Some("again"), &[]).unwrap(), a);
        assert_eq!(s.remove("laptop").unwrap(), a);
        assert_eq!(s.list().unwrap(), vec![b.clone()]);
        match s.remove("laptop") {
            Err(e @ KeyError::NotFound { .. }) => {
                assert!(e.to_string().contains("mlx-box keys list"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.remove(&b.id).unwrap(), b);
        // Nothing but the store and its lock in the dir (no temp file left behind).
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["keys.json", "keys.json.lock"]);
        let tokens = KeyStore::tokens(d.path());
        assert_eq!(tokens.path(), d.path().join("tokens.json"));
        match tokens.remove("x") {
            Err(e) => assert!(e.to_string().contains("mlx-box tokens list"), "{e}"),
            Ok(_) => panic!(),
        }
    }

    /// What a copy of the state dir gives: ids, labels and hashes, and no key that opens anything.
    #[test]
    fn a_copied_file_reveals_no_usable_key() {
        let (_d, s) = store();
        let (_, secret) = s.add(Some("laptop"), &[]).unwrap();
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains(&secret[KEY_PREFIX_LEN..]), "{text}");
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["version"], VERSION);
        let entry = &doc["keys"][0];
        let key = &s.load().unwrap()[0];
        // What the file holds, presented as a key, opens nothing.
        for field in ["sha256", "salt", "id", "last4"] {
            let v = entry[field].as_str().unwrap();
            assert!(!key.verifier.matches(v.as_bytes()), "{field}");
        }
        assert!(key.verifier.matches(secret.as_bytes()));
    }

    const KEY_PREFIX_LEN: usize = super::super::key::KEY_PREFIX.len();

    #[test]
    fn a_damaged_file_is_a_typed_error_that_says_what_to_do() {
        let (_d, s) = store();
        for (text, says) in [
            ("{not json", "is damaged"),
            ("", "is damaged"),
            ("[]", "is damaged"),
            ("{\"version\": 1}", "is damaged"),
            ("{\"version\": 2, \"keys\": []}", "newer mlx-box"),
            (
                "{\"version\": 1, \"keys\": [{\"id\": \"a\", \"name\": null, \"created\": 0, \"last4\": \"x\", \"salt\": \"zz\", \"sha256\": \"00\"}]}",
                "no valid salt and hash",
            ),
            (
                "{\"version\": 1, \"keys\": [{\"id\": \"\", \"name\": null, \"created\": 0, \"last4\": \"x\", \"salt\": \"00000000000000000000000000000000\", \"sha256\": \"0000000000000000000000000000000000000000000000000000000000000000\"}]}",
                "has no id",
            ),
        ] {
            std::fs::write(s.path(), text).unwrap();
            let e = damaged(&s);
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(e.contains(&s.path().display().to_string()), "{e}");
            assert!(e.contains("mlx-box keys reload"), "{e}");
            assert!(s.list().is_err());
            // A damaged file is never overwritten by a change: the keys it may hold are not lost.
            assert!(s.add(None, &[]).is_err());
            assert_eq!(std::fs::read_to_string(s.path()).unwrap(), text);
        }
        std::fs::remove_file(s.path()).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", s.path()).unwrap();
        assert!(
            damaged(&s).contains("cannot be read"),
            "a symlink is not followed"
        );
    }

    #[test]
    fn size_and_entry_caps() {
        let (_d, s) = store();
        std::fs::write(s.path(), vec![b' '; MAX_BYTES as usize + 1]).unwrap();
        assert!(damaged(&s).contains("larger than"));
        let entry = serde_json::json!({"id": "a", "name": null, "created": 0, "last4": "x",
            "salt": "00".repeat(16), "sha256": "00".repeat(32)});
        let doc = serde_json::json!({"version": 1, "keys": vec![entry; MAX_ENTRIES + 1]});
        std::fs::write(s.path(), doc.to_string()).unwrap();
        assert!(damaged(&s).contains("entries"));
        // A full store refuses one more.
        let mut full = Doc::default();
        for _ in 0..MAX_ENTRIES {
            full.keys.push(
                Entry::new(
                    KeyInfo {
                        id: new_id().unwrap(),
                        name: None,
                        created: 0,
                        last4: String::new(),
                        services: vec![],
                    },
                    "k",
                )
                .unwrap(),
            );
        }
        s.write(&full).unwrap();
        assert!(matches!(
            s.add(None, &[]),
            Err(KeyError::Store(StoreError::Full { .. }))
        ));
        assert_eq!(s.list().unwrap().len(), MAX_ENTRIES);
    }
}
