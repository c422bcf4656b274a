//! What was loaded from each file, keyed by path and secrets: reused while the file's stamp
//! (from `fstat` of the descriptor just opened) is unchanged, reloaded when it changed, and
//! kept as "last good" when the change does not load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::read::Snapshot;
use super::{Loaded, Problem};

/// Job-named entries kept at most; configured ones are never dropped.
const JOB_ENTRY_LIMIT: usize = 256;

/// Which entry: the configured file and the secrets it was opened with (job-named files are
/// not kept here: the engine parses and caches them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) path: PathBuf,
    pub(super) secrets: [u8; 32],
}

/// What is known of one entry.
#[derive(Debug)]
pub(super) struct Slot<T> {
    /// The stamp of the version last examined (`None`: it could not be opened).
    stamp: Option<[u8; 32]>,
    /// Why the version last examined does not load, if it does not.
    broken: Option<Problem>,
    last_good: Option<(Arc<T>, SystemTime)>,
    /// The label of a configured entry (`default`, `host-rule:...`, `trust`), for metrics.
    pub(super) label: Option<String>,
}

impl<T> Slot<T> {
    /// The last good version, when there is one.
    pub(super) fn last_good(&self) -> Option<&T> {
        self.last_good.as_ref().map(|(good, _)| good.as_ref())
    }
}

/// The entry for `key`, from the version `snapshot` describes: the cached one when its stamp is
/// unchanged, otherwise read (through the snapshot's descriptors) and parsed off the async
/// workers.
pub(super) async fn load<T: Send + Sync + 'static>(
    map: &Mutex<HashMap<Key, Slot<T>>>,
    key: Key,
    label: Option<&str>,
    what: &str,
    snapshot: Result<Snapshot, Problem>,
    parse: impl FnOnce(Vec<(String, Vec<u8>)>) -> Result<T, Problem> + Send + 'static,
) -> Loaded<T> {
    let now = snapshot.as_ref().ok().map(|snapshot| snapshot.stamp);
    {
        let slots = lock(map);
        if let Some(slot) = slots.get(&key)
            && now.is_some()
            && slot.stamp == now
        {
            return answer(slot, &key.path, what);
        }
    }
    let parsed = match snapshot {
        Ok(snapshot) => tokio::task::spawn_blocking(move || snapshot.read().and_then(parse))
            .await
            .unwrap_or_else(|error| {
                Err(Problem::Unreadable(format!("loading task failed: {error}")))
            }),
        Err(problem) => Err(problem),
    };
    let mut slots = lock(map);
    if slots.len() >= JOB_ENTRY_LIMIT {
        slots.retain(|_, slot| slot.label.is_some());
    }
    let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
        stamp: None,
        broken: None,
        last_good: None,
        label: None,
    });
    if let Some(label) = label {
        slot.label = Some(label.to_owned());
    }
    // The version examined: a version that changed during the read has another stamp now, so
    // the next use reads it again.
    slot.stamp = now;
    match parsed {
        Ok(value) => {
            if slot.last_good.is_some() {
                tracing::info!(path = %key.path.display(), "{what} reloaded: the file changed on disk");
            }
            slot.broken = None;
            slot.last_good = Some((Arc::new(value), SystemTime::now()));
        }
        Err(problem) => {
            if slot.last_good.is_some() && slot.broken.as_ref() != Some(&problem) {
                tracing::warn!(
                    path = %key.path.display(),
                    problem = %problem,
                    "{what} changed on disk but does not load; keeping the last good version"
                );
            }
            slot.broken = Some(problem);
        }
    }
    answer(slot, &key.path, what)
}

fn answer<T>(slot: &Slot<T>, path: &Path, what: &str) -> Loaded<T> {
    match (&slot.broken, &slot.last_good) {
        (None, Some((good, _))) => Loaded::Good(good.clone(), None),
        (Some(problem), Some((good, since))) => {
            let since = time::OffsetDateTime::from(*since)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            Loaded::Good(
                good.clone(),
                Some(format!(
                    "{what} {} changed on disk but does not load ({problem}); using the last good \
                     version, loaded at {since}",
                    path.display()
                )),
            )
        }
        (Some(problem), None) => Loaded::Bad(problem.clone()),
        (None, None) => Loaded::Bad(Problem::Unreadable("not loaded".into())),
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a task panicked while holding it; the map is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
