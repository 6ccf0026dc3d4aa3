//! What the engine notices and carries on past: a failed background fdatasync, a seal it could
//! not use, a file it could not clean up. Each warning is logged with `tracing` and handed to
//! every sink registered with [`subscribe`] (the binding's publishes it to JS), so none is lost
//! where no log subscriber runs.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Defines [`Kind`] and its complete list from one table.
macro_rules! kinds {
    ($($variant:ident => $name:literal: $doc:literal),* $(,)?) => {
        /// What a warning is about; its name is stable.
        #[derive(Clone, Copy, Debug, Eq, PartialEq)]
        pub enum Kind {
            $(
                #[doc = $doc]
                $variant,
            )*
        }

        impl Kind {
            /// Every kind.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The kind's stable name, e.g. `background-sync-failed`.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),*
                }
            }
        }
    };
}

kinds! {
    BackgroundSyncFailed => "background-sync-failed": "The `intervalMs` policy's timed fdatasync failed (the writer is poisoned).",
    CloseFailed => "close-failed": "A writer dropped without `close()` could not be closed cleanly.",
    CommitCutBack => "commit-cut-back": "A commit's write failed; the file was cut back to the last committed entry.",
    CutBackFailed => "cut-back-failed": "A failed write or preallocation could not be cut back (the writer is poisoned).",
    PreallocationSkipped => "preallocation-skipped": "No room to preallocate; the write grows the WAL itself.",
    TailTrimFailed => "tail-trim-failed": "The unused preallocated zeros could not be cut at close (read as the end of the log).",
    SealWriteFailed => "seal-write-failed": "The seal could not be written; the next open scans more (said once until a seal write succeeds).",
    SealIgnored => "seal-ignored": "A seal that does not name a frame of its WAL was ignored; the open scanned the whole file.",
    TornTailUnsaved => "torn-tail-unsaved": "A torn tail's bytes could not be kept beside the WAL before it was cut.",
    ConsumerCapped => "consumer-capped": "A consumer's position past the end of the log was capped to the end.",
    CleanupFailed => "cleanup-failed": "A temporary file or directory could not be removed (or a staged directory taken back).",
}

/// One warning: what, about which file or directory, and the failure in words.
#[derive(Clone, Debug)]
pub struct Warning {
    /// What happened.
    pub kind: Kind,
    /// The file or directory it concerns.
    pub path: PathBuf,
    /// The failure or the detail, in words.
    pub detail: String,
}

/// A sink for warnings, called on the thread that noticed them.
pub type Sink = Arc<dyn Fn(&Warning) + Send + Sync>;

static SINKS: Mutex<Vec<(u64, Sink)>> = Mutex::new(Vec::new());
static NEXT_ID: Mutex<u64> = Mutex::new(0);

fn sinks() -> MutexGuard<'static, Vec<(u64, Sink)>> {
    SINKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A registered sink; dropping it unregisters the sink.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        sinks().retain(|(id, _)| *id != self.id);
    }
}

/// Hand every warning from now on to `sink`, until the returned subscription is dropped.
pub fn subscribe(sink: Sink) -> Subscription {
    let id = {
        let mut next = NEXT_ID.lock().unwrap_or_else(PoisonError::into_inner);
        *next += 1;
        *next
    };
    sinks().push((id, sink));
    Subscription { id }
}

/// Log a warning and hand it to every sink.
pub fn report(kind: Kind, path: &Path, detail: impl Display) {
    let warning = Warning {
        kind,
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    tracing::warn!(kind = kind.as_str(), path = %path.display(), detail = %warning.detail);
    // Called outside the lock, so a sink may subscribe or unsubscribe.
    let listening: Vec<Sink> = sinks().iter().map(|(_, sink)| Arc::clone(sink)).collect();
    for sink in listening {
        sink(&warning);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_hears_warnings_until_it_is_dropped() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&heard);
        let path = Path::new("/warning-test/only-this-test");
        let subscription = subscribe(Arc::new(move |w: &Warning| {
            if w.path == Path::new("/warning-test/only-this-test") {
                into.lock().unwrap().push((w.kind, w.detail.clone()));
            }
        }));
        report(Kind::CleanupFailed, path, "one");
        drop(subscription);
        report(Kind::CleanupFailed, path, "two");
        assert_eq!(
            *heard.lock().unwrap(),
            vec![(Kind::CleanupFailed, "one".to_owned())]
        );
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
    }
}
