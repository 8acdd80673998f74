//! Saved runs: `<state>/bench/<id>.json`, one file per run, ids that sort by time.

use super::report::{BenchResult, BenchSummary};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("no benchmark run `{id}` in {dir} (list them with `mlx-box bench --history`)")]
    NotFound { id: String, dir: PathBuf },
    #[error("`{id}` matches several runs ({matches}): give more of the id")]
    Ambiguous { id: String, matches: String },
    #[error("no benchmark has been run yet (in {0}); run `mlx-box bench` first")]
    Empty(PathBuf),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a benchmark result ({source}); move it away")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("bench")
}

/// `YYYYmmdd-HHMMSS-xxxx` in UTC, from Unix ms, with 4 random hex digits (two runs in one second).
pub fn new_id(now_ms: u64) -> String {
    let secs = now_ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{:04x}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        rand::random::<u16>()
    )
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn save(state_dir: &Path, r: &BenchResult) -> Result<PathBuf, HistoryError> {
    let d = dir(state_dir);
    let path = d.join(format!("{}.json", r.id));
    let io = |e| HistoryError::Io {
        path: path.clone(),
        source: e,
    };
    std::fs::create_dir_all(&d).map_err(io)?;
    let text = serde_json::to_vec_pretty(r).expect("result serialises");
    crate::config::atomic_write(&path, &text).map_err(io)?;
    Ok(path)
}

/// Every saved id, oldest first.
pub fn ids(state_dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir(state_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
        })
        .collect();
    ids.sort();
    ids
}

pub fn load(state_dir: &Path, id: &str) -> Result<BenchResult, HistoryError> {
    let id = resolve(state_dir, id)?;
    let path = dir(state_dir).join(format!("{id}.json"));
    let text = std::fs::read(&path).map_err(|e| HistoryError::Io {
        path: path.clone(),
        source: e,
    })?;
    serde_json::from_slice(&text).map_err(|e| HistoryError::Json { path, source: e })
}

/// An id, a unique prefix of one, `last`, or `last-N` (N runs before the last).
pub fn resolve(state_dir: &Path, id: &str) -> Result<String, HistoryError> {
    let all = ids(state_dir);
    if let Some(back) = id.strip_prefix("last") {
        let n: usize = match back.strip_prefix('-') {
            Some(n) => n.parse().map_err(|_| HistoryError::NotFound {
                id: id.into(),
                dir: dir(state_dir),
            })?,
            None if back.is_empty() => 0,
            None => {
                return Err(HistoryError::NotFound {
                    id: id.into(),
                    dir: dir(state_dir),
                })
            }
        };
        if all.is_empty() {
            return Err(HistoryError::Empty(dir(state_dir)));
        }
        return n
            .checked_add(1)
            .and_then(|n| all.len().checked_sub(n))
            .map(|i| all[i].clone())
            .ok_or(HistoryError::NotFound {
                id: id.into(),
                dir: dir(state_dir),
            });
    }
    if all.iter().any(|x| x == id) {
        return Ok(id.to_string());
    }
    let matches: Vec<&String> = all.iter().filter(|x| x.starts_with(id)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(HistoryError::NotFound {
            id: id.into(),
            dir: dir(state_dir),
        }),
        many => Err(HistoryError::Ambiguous {
            id: id.into(),
            matches: many
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The history, oldest first (unreadable files are skipped).
pub fn list(state_dir: &Path) -> Vec<BenchSummary> {
    ids(state_dir)
        .iter()
        .filter_map(|id| load(state_dir, id).ok())
        .map(|r| r.summary())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_utc_and_sortable() {
        // 2025-02-15 13:04:05 UTC
        let id = new_id(1_739_624_645_000);
        assert!(id.starts_with("20250215-130405-"), "{id}");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn resolve_last_prefix_and_errors() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            resolve(d.path(), "last"),
            Err(HistoryError::Empty(_))
        ));
        std::fs::create_dir_all(dir(d.path())).unwrap();
        for id in [
            "20250101-000000-aaaa",
            "20250102-000000-bbbb",
            "20250102-000000-bbcc",
        ] {
            std::fs::write(dir(d.path()).join(format!("{id}.json")), "{}").unwrap();
        }
        assert_eq!(resolve(d.path(), "last").unwrap(), "20250102-000000-bbcc");
        assert_eq!(resolve(d.path(), "last-2").unwrap(), "20250101-000000-aaaa");
        assert!(resolve(d.path(), "last-3").is_err());
        // These overflowed (`1 + usize::MAX`) and panicked the control API.
        for bad in [
            "lastx",
            "last-18446744073709551615",
            "last-",
            "last--1",
            "last\u{0}",
        ] {
            assert!(resolve(d.path(), bad).is_err(), "{bad}");
        }
        assert_eq!(
            resolve(d.path(), "20250101").unwrap(),
            "20250101-000000-aaaa"
        );
        assert!(matches!(
            resolve(d.path(), "20250102"),
            Err(HistoryError::Ambiguous { .. })
        ));
        assert!(matches!(
            load(d.path(), "20250101"),
            Err(HistoryError::Json { .. })
        ));
        assert!(list(d.path()).is_empty(), "unreadable files are skipped");
    }
}
