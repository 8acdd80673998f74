//! `state.json` in the state dir: what runs, so a daemon that starts after a crash (or SIGKILL) of the
//! previous one adopts live servers that match and reaps the rest. No duplicates, no orphans.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub pid: u32,
    pub pgid: u32,
    /// Process start time (s since the epoch) as the OS reports it: a reused pid has another one.
    pub start_time: u64,
    pub argv_hash: String,
    pub port: u16,
}

pub struct StateFile {
    path: PathBuf,
    records: Mutex<BTreeMap<String, Record>>,
}

impl StateFile {
    pub fn load(path: PathBuf) -> Self {
        // Never through a symlink, and never a huge file: it steers signals to process groups.
        let records = crate::paths::read_no_follow(&path, 1 << 20)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StateFile {
            path,
            records: Mutex::new(records),
        }
    }

    pub fn records(&self) -> BTreeMap<String, Record> {
        self.records.lock().unwrap().clone()
    }

    /// Sets (or with `None` removes) the record of a service and writes the file atomically.
    pub fn set(&self, name: &str, rec: Option<Record>) {
        let mut r = self.records.lock().unwrap();
        let changed = match rec {
            Some(rec) => r.insert(name.to_string(), rec.clone()) != Some(rec),
            None => r.remove(name).is_some(),
        };
        if changed {
            let bytes = serde_json::to_vec_pretty(&*r).unwrap_or_default();
            // temp + rename, no fsync: this is on the restart path, and a state file lost to a power cut only
            // means the next daemon cannot adopt (the servers died with the power anyway).
            let tmp = self.path.with_extension("json.tmp");
            let written = crate::paths::write_no_follow(&tmp, &bytes)
                .and_then(|_| std::fs::rename(&tmp, &self.path));
            if let Err(e) = written {
                tracing::warn!("cannot write {}: {e}", self.path.display());
            }
        }
    }
}
