//! The Responses store (OpenAI's `store`, default true, and `previous_response_id`): each stored
//! response with its conversation (input items and output items), so a later request can continue it,
//! and `GET` / `DELETE /v1/responses/{id}` can read and remove it.
//!
//! - Bounded: at most [`Caps::count`] responses and [`Caps::bytes`] bytes of them (the oldest go first),
//!   each kept [`Caps::ttl_s`] at most; a response larger than the byte cap is not kept. The caps are
//!   `[server] responses_*` in settings.toml, changed live.
//! - Scoped by key: a response is stored under a hash of the API key that made it (SHA-256; the key
//!   itself is never written), and another key reads it as missing (404), never as forbidden.
//! - Held in memory (a lookup on the request path takes a lock and clones an `Arc`) and mirrored to
//!   `<state>/responses/<id>.json` (written whole: a temp file renamed), read back at start, so a
//!   daemon restart keeps them. A file that does not parse is removed.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The store's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub count: usize,
    pub bytes: usize,
    pub ttl_s: u64,
}

/// The defaults of settings.toml: 10,000 responses, 256 MiB, 30 days.
pub const CAPS: Caps = Caps::of(crate::config::DEFAULT_RESPONSES);

impl Caps {
    pub const fn of(k: crate::config::ResponsesKept) -> Caps {
        Caps {
            count: k.max_count,
            bytes: k.max_bytes,
            ttl_s: k.keep_s,
        }
    }
}

/// A stored response: the Response object, and the conversation it ends (input then output items).
#[derive(Debug)]
pub struct Record {
    pub response: Value,
    pub items: Vec<Value>,
}

struct Entry {
    owner: String,
    created: u64,
    size: usize,
    record: Arc<Record>,
}

struct Inner {
    caps: Caps,
    map: HashMap<String, Entry>,
    /// (created, id), oldest first.
    order: BTreeSet<(u64, String)>,
    bytes: usize,
}

/// The disk's share of a [`ResponseStore::put_at`].
pub struct Write {
    id: String,
    bytes: Vec<u8>,
    gone: Vec<String>,
}

pub struct ResponseStore {
    /// None: in memory only (tests).
    dir: Option<PathBuf>,
    inner: Mutex<Inner>,
}

impl Inner {
    fn new(caps: Caps) -> Mutex<Inner> {
        Mutex::new(Inner {
            caps,
            map: HashMap::new(),
            order: BTreeSet::new(),
            bytes: 0,
        })
    }
}

/// What a key is known by in the store: the hex SHA-256 of the key (empty: no key, an open listener).
pub fn owner_of(key: Option<&[u8]>) -> String {
    use sha2::Digest;
    match key {
        None => String::new(),
        Some(k) => hex::encode(sha2::Sha256::digest(k)),
    }
}

/// A response id mlx-box makes (`resp_` and hex): anything else is no stored response, and never
/// becomes a file name.
pub fn valid_id(id: &str) -> bool {
    id.strip_prefix("resp_")
        .is_some_and(|h| !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn now_s() -> u64 {
    crate::api::now_ms() / 1000
}

static SHARED: std::sync::OnceLock<ResponseStore> = std::sync::OnceLock::new();

/// The daemon's store, in `<state>/responses/`: opened once, before the listeners start.
pub fn open_shared(state_dir: &Path, caps: Caps) {
    let _ = SHARED.set(ResponseStore::open(&state_dir.join("responses"), caps));
}

/// The store every listener shares (in memory only when none was opened: a proxy without a daemon).
pub fn shared() -> &'static ResponseStore {
    SHARED.get_or_init(|| ResponseStore::memory(CAPS))
}

impl ResponseStore {
    /// A store in memory only.
    pub fn memory(caps: Caps) -> ResponseStore {
        ResponseStore {
            dir: None,
            inner: Inner::new(caps),
        }
    }

    /// The store of `dir` (made if missing), with what it holds from before (expired, unreadable and
    /// over-cap files removed). A directory that cannot be made leaves a store in memory only.
    pub fn open(dir: &Path, caps: Caps) -> ResponseStore {
        let s = ResponseStore {
            dir: std::fs::create_dir_all(dir).ok().map(|_| dir.to_path_buf()),
            inner: Inner::new(caps),
        };
        s.load(now_s());
        s
    }

    fn load(&self, now: u64) {
        let Some(dir) = &self.dir else { return };
        let ttl_s = self.inner.lock().unwrap().caps.ttl_s;
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json").filter(|i| valid_id(i)) else {
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            };
            let file = std::fs::read(&path).ok().and_then(|b| {
                let size = b.len();
                let v: Value = serde_json::from_slice(&b).ok()?;
                let owner = v.get("owner")?.as_str()?.to_string();
                let created = v.get("created")?.as_u64()?;
                let response = v.get("response")?.clone();
                let items = v.get("items")?.as_array()?.clone();
                Some((owner, created, size, Record { response, items }))
            });
            match file {
                Some((owner, created, size, record)) if created + ttl_s > now => {
                    self.insert(id.to_string(), owner, created, size, Arc::new(record));
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let gone = self.evict(&mut self.inner.lock().unwrap(), now);
        self.remove_files(gone);
    }

    fn insert(&self, id: String, owner: String, created: u64, size: usize, record: Arc<Record>) {
        let mut g = self.inner.lock().unwrap();
        if let Some(old) = g.map.remove(&id) {
            g.order.remove(&(old.created, id.clone()));
            g.bytes -= old.size;
        }
        g.order.insert((created, id.clone()));
        g.bytes += size;
        g.map.insert(
            id,
            Entry {
                owner,
                created,
                size,
                record,
            },
        );
    }

    /// Removes the expired and, oldest first, what is over the caps: the ids removed.
    fn evict(&self, g: &mut Inner, now: u64) -> Vec<String> {
        let mut gone = vec![];
        while let Some((created, id)) = g.order.first().cloned() {
            let expired = created + g.caps.ttl_s <= now;
            if !expired && g.map.len() <= g.caps.count && g.bytes <= g.caps.bytes {
                break;
            }
            g.order.pop_first();
            if let Some(e) = g.map.remove(&id) {
                g.bytes -= e.size;
            }
            gone.push(id);
        }
        gone
    }

    fn file(&self, id: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{id}.json")))
    }

    fn remove_files(&self, ids: Vec<String>) {
        for id in ids {
            if let Some(p) = self.file(&id) {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// Keeps `record` as `id` for `owner`, in memory and on disk.
    #[cfg(test)]
    pub fn put(&self, owner: &str, id: &str, record: Record) {
        if let Some(w) = self.put_at(owner, id, record, now_s()) {
            self.write(w);
        }
    }

    /// Keeps `record` in memory at once (a request that names it next finds it), evicting what is over
    /// the caps; the disk's share is the [`Write`] returned, for [`ResponseStore::write`] (off the
    /// request path).
    pub fn put_at(&self, owner: &str, id: &str, record: Record, now: u64) -> Option<Write> {
        if !valid_id(id) {
            return None;
        }
        // The file's JSON, written from the record itself (no copy of its tree).
        #[derive(serde::Serialize)]
        struct File<'a> {
            owner: &'a str,
            created: u64,
            response: &'a Value,
            items: &'a [Value],
        }
        let file = File {
            owner,
            created: now,
            response: &record.response,
            items: &record.items,
        };
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        let caps = self.inner.lock().unwrap().caps;
        if caps.count == 0 || bytes.len() > caps.bytes {
            return None;
        }
        self.insert(
            id.to_string(),
            owner.to_string(),
            now,
            bytes.len(),
            Arc::new(record),
        );
        let gone = self.evict(&mut self.inner.lock().unwrap(), now);
        Some(Write {
            id: id.to_string(),
            bytes,
            gone,
        })
    }

    /// Writes a kept response's file (a temp file renamed) and removes those it evicted; a response
    /// deleted or evicted meanwhile leaves no file.
    pub fn write(&self, w: Write) {
        let Some(p) = self.file(&w.id) else { return };
        self.remove_files(w.gone);
        let tmp = p.with_extension("tmp");
        if std::fs::write(&tmp, &w.bytes)
            .and_then(|_| std::fs::rename(&tmp, &p))
            .is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
        if !self.inner.lock().unwrap().map.contains_key(&w.id) {
            let _ = std::fs::remove_file(&p);
        }
    }

    /// The response `id` if `owner` stored it and it has not expired.
    pub fn get(&self, owner: &str, id: &str) -> Option<Arc<Record>> {
        self.get_at(owner, id, now_s())
    }

    pub fn get_at(&self, owner: &str, id: &str, now: u64) -> Option<Arc<Record>> {
        let g = self.inner.lock().unwrap();
        let e = g.map.get(id)?;
        (e.owner == owner && e.created + g.caps.ttl_s > now).then(|| e.record.clone())
    }

    /// New caps (settings.toml changed): what is now over them goes at once, files too.
    pub fn set_caps(&self, caps: Caps) {
        let gone = {
            let mut g = self.inner.lock().unwrap();
            if g.caps == caps {
                return;
            }
            g.caps = caps;
            self.evict(&mut g, now_s())
        };
        self.remove_files(gone);
    }

    /// Removes the response `id` if `owner` stored it: whether it did.
    pub fn delete(&self, owner: &str, id: &str) -> bool {
        let mut g = self.inner.lock().unwrap();
        if g.map.get(id).is_none_or(|e| e.owner != owner) {
            return false;
        }
        if let Some(e) = g.map.remove(id) {
            g.order.remove(&(e.created, id.to_string()));
            g.bytes -= e.size;
        }
        drop(g);
        self.remove_files(vec![id.to_string()]);
        true
    }

    /// (responses, bytes) held.
    #[cfg(test)]
    pub fn size(&self) -> (usize, usize) {
        let g = self.inner.lock().unwrap();
        (g.map.len(), g.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(n: usize) -> Record {
        Record {
            response: json!({"id": "x", "pad": "p".repeat(n)}),
            items: vec![json!({"type": "message", "role": "user", "content": "hi"})],
        }
    }

    const ID: [&str; 4] = ["resp_a1", "resp_b2", "resp_c3", "resp_d4"];

    #[test]
    fn bounded_by_count_oldest_first() {
        let s = ResponseStore::memory(Caps {
            count: 2,
            bytes: 1 << 20,
            ttl_s: 100,
        });
        for (t, id) in ID.iter().enumerate().take(3) {
            s.put_at("k", id, rec(10), t as u64);
        }
        assert_eq!(s.size().0, 2);
        assert!(s.get_at("k", ID[0], 3).is_none(), "the oldest went");
        assert!(s.get_at("k", ID[1], 3).is_some());
        assert!(s.get_at("k", ID[2], 3).is_some());
    }

    #[test]
    fn bounded_by_bytes_and_one_too_large_is_not_kept() {
        let s = ResponseStore::memory(Caps {
            count: 100,
            bytes: 1200,
            ttl_s: 100,
        });
        s.put_at("k", ID[0], rec(400), 0);
        s.put_at("k", ID[1], rec(400), 1);
        assert_eq!(s.size().0, 2);
        s.put_at("k", ID[2], rec(400), 2);
        assert_eq!(s.size().0, 2, "over 1200 bytes: the oldest went");
        assert!(s.size().1 <= 1200);
        assert!(s.get_at("k", ID[0], 2).is_none());
        s.put_at("k", ID[3], rec(2000), 3);
        assert!(s.get_at("k", ID[3], 3).is_none(), "larger than the cap");
        assert!(
            s.get_at("k", ID[2], 3).is_some(),
            "and nothing evicted for it"
        );
    }

    #[test]
    fn expires_after_its_ttl() {
        let s = ResponseStore::memory(Caps {
            count: 100,
            bytes: 1 << 20,
            ttl_s: 10,
        });
        s.put_at("k", ID[0], rec(1), 0);
        assert!(s.get_at("k", ID[0], 9).is_some());
        assert!(s.get_at("k", ID[0], 10).is_none());
        s.put_at("k", ID[1], rec(1), 10);
        assert_eq!(s.size().0, 1, "expired ones go at the next put");
    }

    #[test]
    fn smaller_caps_apply_at_once_files_too_and_zero_keeps_none() {
        let dir = tempfile::tempdir().unwrap();
        let s = ResponseStore::open(dir.path(), CAPS);
        for id in ID {
            s.put("k", id, rec(5));
        }
        s.set_caps(Caps { count: 1, ..CAPS });
        assert_eq!(s.size().0, 1);
        assert!(s.get("k", ID[3]).is_some(), "the newest stays");
        assert!(!dir.path().join(format!("{}.json", ID[0])).exists());
        assert!(dir.path().join(format!("{}.json", ID[3])).exists());
        s.set_caps(Caps { count: 0, ..CAPS });
        assert_eq!(s.size().0, 0);
        s.put("k", ID[0], rec(1));
        assert_eq!(s.size().0, 0, "count 0 keeps nothing");
        assert!(!dir.path().join(format!("{}.json", ID[0])).exists());
    }

    #[test]
    fn another_key_sees_nothing_and_cannot_delete() {
        let s = ResponseStore::memory(CAPS);
        let (a, b) = (owner_of(Some(b"key-a")), owner_of(Some(b"key-b")));
        assert_ne!(a, b);
        assert!(!a.contains("key-a"));
        s.put("", ID[1], rec(1));
        s.put(&a, ID[0], rec(1));
        assert!(s.get(&b, ID[0]).is_none());
        assert!(s.get("", ID[0]).is_none(), "no key is not a key");
        assert!(!s.delete(&b, ID[0]));
        assert!(s.get(&a, ID[0]).is_some());
        assert!(s.delete(&a, ID[0]));
        assert!(s.get(&a, ID[0]).is_none());
        assert!(!s.delete(&a, ID[0]));
    }

    #[test]
    fn ids_are_checked_before_they_name_a_file() {
        for bad in [
            "",
            "resp_",
            "resp_../../etc",
            "resp_a/b",
            "x_abc",
            "resp_zz",
            &format!("resp_{}", "a".repeat(65)),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert!(valid_id("resp_0123abcdef"));
        let s = ResponseStore::memory(CAPS);
        s.put("", "resp_../x", rec(1));
        assert_eq!(s.size().0, 0);
    }

    #[test]
    fn survives_a_reopen_and_drops_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let caps = Caps {
            count: 2,
            bytes: 1 << 20,
            ttl_s: 3600,
        };
        let s = ResponseStore::open(dir.path(), caps);
        s.put("k", ID[0], rec(5));
        s.put("k", ID[1], rec(5));
        assert!(s.delete("k", ID[1]));
        drop(s);
        std::fs::write(dir.path().join("resp_ff.json"), b"{not json").unwrap();
        std::fs::write(dir.path().join("resp_ee.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"left alone").unwrap();
        let s = ResponseStore::open(dir.path(), caps);
        let r = s.get("k", ID[0]).expect("kept across a reopen");
        assert_eq!(r.items.len(), 1);
        assert_eq!(r.response["pad"], "ppppp");
        assert!(s.get("k", ID[1]).is_none(), "deleted stays deleted");
        assert_eq!(s.size().0, 1);
        assert!(!dir.path().join("resp_ff.json").exists());
        assert!(!dir.path().join("resp_ee.tmp").exists());
        assert!(dir.path().join("notes.txt").exists());
    }
}
