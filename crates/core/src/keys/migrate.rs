//! Moving the keys earlier versions kept in the OS keyring into the key store: each key is read once,
//! hashed into the store (keeping its id, label, date and scope), then removed from the keyring. The
//! store is written before anything is removed, so a crash in between loses no key (the next run finds
//! them held and only removes them). Once the keyring's index is gone the store notes it
//! (`keyring_migrated`) and the keyring is not asked again. A keyring that cannot be opened or read holds
//! nothing to migrate: no error (a later run, after an unlock, tries again).

use super::key::{KeyError, KeyInfo};
use super::keyring::Keyring;
use super::store::{KeyStore, Kind};

/// Where the old keys are: the OS keyring, or a fake in tests.
pub trait Legacy {
    /// Every key with its secret.
    fn load(&self) -> Result<Vec<(KeyInfo, String)>, KeyError>;
    /// Removes one key (secret and index entry).
    fn forget(&self, id: &str) -> Result<(), KeyError>;
    /// Where they were, for the note (`the OS keyring (service mlx-box)`).
    fn describe(&self) -> String;
}

impl Legacy for Keyring {
    fn load(&self) -> Result<Vec<(KeyInfo, String)>, KeyError> {
        Keyring::load(self)
    }

    fn forget(&self, id: &str) -> Result<(), KeyError> {
        Keyring::forget(self, id)
    }

    fn describe(&self) -> String {
        format!("the OS keyring (service `{}`)", self.service())
    }
}

/// What a migration moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Migrated {
    pub count: usize,
    pub kind: Kind,
    /// The note for the log, `keys list` and the alert.
    pub note: String,
}

/// Moves what the OS keyring holds for `store` (API keys: the keyring `mlx-box`; tokens:
/// `mlx-box-control`) into it. `Some` when keys were moved. Blocking (D-Bus): off the async threads.
pub fn from_os_keyring(store: &KeyStore) -> Option<Migrated> {
    let kind = store.kind();
    migrate(store, || match kind {
        Kind::ApiKeys => Keyring::open(),
        Kind::Tokens => Keyring::open_control(),
    })
}

/// Moves what `legacy` holds into `store`, unless the store says it was done. `open` is called only then.
pub fn migrate<L: Legacy>(
    store: &KeyStore,
    open: impl FnOnce() -> Result<L, KeyError>,
) -> Option<Migrated> {
    // Read without the lock first: once migrated (the usual case) the keyring is never opened.
    match store.read() {
        Ok(doc) if doc.keyring_migrated => return None,
        Ok(_) => {}
        // A damaged store is reported by whoever reads it; nothing is moved into it.
        Err(_) => return None,
    }
    // The keyring is read before the store is locked: one that cannot be read leaves no trace.
    let old = match open().and_then(|l| Ok((l.load()?, l))) {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!("no keys to migrate from the OS keyring: {e}");
            return None;
        }
    };
    let (old, legacy) = old;
    let result = store.update(|doc| {
        if doc.keyring_migrated {
            return Ok(false);
        }
        for (info, secret) in &old {
            if doc.holds(secret).is_none() {
                doc.insert(store.path(), info.clone(), secret)?;
            }
        }
        doc.keyring_migrated = old.is_empty();
        Ok(true)
    });
    match result {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(
                "the {}s in {} could not be moved into {}: {e}",
                store.kind().noun(),
                legacy.describe(),
                store.path().display()
            );
            return None;
        }
    }
    if old.is_empty() {
        return None;
    }
    // Held by the store now: removed from the keyring, then noted as done.
    let mut left = 0;
    for (info, _) in &old {
        if let Err(e) = legacy.forget(&info.id) {
            tracing::warn!(id = %info.id, "moved into the key store but not removed from {}: {e}", legacy.describe());
            left += 1;
        }
    }
    if left == 0 {
        if let Err(e) = store.update(|doc| {
            doc.keyring_migrated = true;
            Ok(())
        }) {
            tracing::warn!("{e}");
        }
    }
    let note = format!(
        "{} {}(s) moved from {} into {} (hashed: the file holds no key){}",
        old.len(),
        store.kind().noun(),
        legacy.describe(),
        store.path().display(),
        if left == 0 {
            "; the keyring no longer holds them".to_string()
        } else {
            format!("; {left} could not be removed from the keyring (the next start tries again)")
        }
    );
    tracing::info!("{note}");
    Some(Migrated {
        count: old.len(),
        kind: store.kind(),
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A keyring in memory: its keys, whether it can be read, and what was removed.
    #[derive(Default)]
    struct Fake {
        keys: RefCell<Vec<(KeyInfo, String)>>,
        locked: bool,
        stuck: bool,
    }

    impl Legacy for &Fake {
        fn load(&self) -> Result<Vec<(KeyInfo, String)>, KeyError> {
            if self.locked {
                return Err(KeyError::Unavailable("locked".into()));
            }
            Ok(self.keys.borrow().clone())
        }
        fn forget(&self, id: &str) -> Result<(), KeyError> {
            if self.stuck {
                return Err(KeyError::Unavailable("read-only".into()));
            }
            self.keys.borrow_mut().retain(|(k, _)| k.id != id);
            Ok(())
        }
        fn describe(&self) -> String {
            "the fake keyring".into()
        }
    }

    fn info(id: &str, services: &[&str]) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            name: Some(format!("label {id}")),
            created: 1_700_000_000,
            last4: "abcd".into(),
            services: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn fake(keys: &[(&str, &str, &[&str])]) -> Fake {
        Fake {
            keys: RefCell::new(
                keys.iter()
                    .map(|(id, s, sc)| (info(id, sc), s.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn keyring_keys_are_hashed_into_the_store_then_removed_from_the_keyring() {
        let d = tempfile::tempdir().unwrap();
        let store = KeyStore::api_keys(d.path());
        let ring = fake(&[("k1", "sk-one", &[]), ("k2", "sk-two", &["embed"])]);
        let m = migrate(&store, || Ok(&ring)).expect("moved");
        assert_eq!(m.count, 2);
        assert!(
            m.note.contains("2 API key(s) moved from the fake keyring"),
            "{}",
            m.note
        );
        assert!(m.note.contains("no longer holds them"), "{}", m.note);
        assert!(ring.keys.borrow().is_empty(), "removed from the keyring");
        // Kept as they were (id, label, date, scope), checked by hash.
        let keys = store.load().unwrap();
        assert_eq!(keys[0].info, info("k1", &[]));
        assert_eq!(keys[1].info, info("k2", &["embed"]));
        assert!(keys[0].verifier.matches(b"sk-one") && keys[1].verifier.matches(b"sk-two"));
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(
            !text.contains("sk-one") && !text.contains("sk-two"),
            "{text}"
        );
        // Done: the keyring is not opened again.
        let opened = std::cell::Cell::new(false);
        assert!(migrate(&store, || {
            opened.set(true);
            Ok(&ring)
        })
        .is_none());
        assert!(!opened.get());
    }

    #[test]
    fn an_unreadable_keyring_is_nothing_to_migrate_and_is_tried_again() {
        let d = tempfile::tempdir().unwrap();
        let store = KeyStore::tokens(d.path());
        assert!(migrate::<&Fake>(&store, || Err(KeyError::NoPlatformStore)).is_none());
        let mut ring = fake(&[("t1", "tok", &["admin"])]);
        ring.locked = true;
        assert!(migrate(&store, || Ok(&ring)).is_none());
        assert!(store.list().unwrap().is_empty());
        // Unlocked later: moved then.
        ring.locked = false;
        let m = migrate(&store, || Ok(&ring)).unwrap();
        assert!(m.note.contains("1 access token(s)"), "{}", m.note);
        assert_eq!(store.list().unwrap()[0].services, ["admin"]);
    }

    /// A key that cannot be removed from the keyring stays held once, and is removed on a later run.
    #[test]
    fn a_key_not_removed_is_kept_once_and_removed_later() {
        let d = tempfile::tempdir().unwrap();
        let store = KeyStore::api_keys(d.path());
        let mut ring = fake(&[("k1", "sk-one", &[])]);
        ring.stuck = true;
        let m = migrate(&store, || Ok(&ring)).unwrap();
        assert!(m.note.contains("could not be removed"), "{}", m.note);
        assert_eq!(ring.keys.borrow().len(), 1);
        ring.stuck = false;
        migrate(&store, || Ok(&ring)).unwrap();
        assert!(ring.keys.borrow().is_empty());
        assert_eq!(store.list().unwrap().len(), 1, "held once");
        assert!(migrate(&store, || Ok(&ring)).is_none());
    }

    /// A store that holds keys already (made by this version) gets the old ones beside them; an empty
    /// keyring is noted as done.
    #[test]
    fn migration_adds_to_what_the_store_holds() {
        let d = tempfile::tempdir().unwrap();
        let store = KeyStore::api_keys(d.path());
        let (new, _) = store.add(Some("new"), &[]).unwrap();
        let ring = fake(&[(&new.id, "sk-old", &[])]);
        migrate(&store, || Ok(&ring)).unwrap();
        let list = store.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_ne!(list[0].id, list[1].id, "an id already taken gets a new one");
        let empty = Fake::default();
        let d2 = tempfile::tempdir().unwrap();
        let s2 = KeyStore::api_keys(d2.path());
        assert!(migrate(&s2, || Ok(&empty)).is_none());
        assert!(s2.read().unwrap().keyring_migrated);
    }

    #[test]
    fn a_damaged_store_gets_nothing_and_the_keyring_keeps_its_keys() {
        let d = tempfile::tempdir().unwrap();
        let store = KeyStore::api_keys(d.path());
        std::fs::write(store.path(), "{oops").unwrap();
        let ring = fake(&[("k1", "sk-one", &[])]);
        assert!(migrate(&store, || Ok(&ring)).is_none());
        assert_eq!(ring.keys.borrow().len(), 1);
        assert_eq!(std::fs::read_to_string(store.path()).unwrap(), "{oops");
    }
}
