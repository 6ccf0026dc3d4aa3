//! Read-ahead for a batched read that ends (a WAL reader, a store's replay): a thread of its
//! own reads chunks into a short queue while JS works on the ones before. The reading never
//! waits for JS between chunks, and a chunk that is ready costs JS no thread hand-off at all
//! ([`ReadAhead::take`]). The thread stops at the end, at the first error, or when JS lets go;
//! a later read starts another from where it stopped.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use selene_persist_engine::{Error, Result};

use crate::chunk::{NativeChunk, Packed};
use crate::convert::js_error;
use crate::task::{ChunkTask, Closable, blocking};

/// Chunks read ahead at most: enough that the reader never waits for JS to take one, few
/// enough to hold (a chunk is at most about 4 MiB).
const DEPTH: usize = 3;

/// How a chunk of `T` is read.
pub type Read<T> = Box<dyn Fn(&mut T) -> Result<Packed> + Send>;

/// Reads `T` ahead, one chunk at a time.
pub struct ReadAhead<T> {
    source: Closable<T>,
    what: &'static str,
    running: Mutex<Option<Arc<Queue>>>,
}

/// Chunks read and not yet taken, shared by the reading thread and JS.
#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    /// A chunk arrived or the thread ended.
    filled: Condvar,
    /// A chunk was taken, or JS let go.
    drained: Condvar,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Result<NativeChunk>>,
    /// The thread has ended: nothing more will arrive.
    ended: bool,
    /// JS let go: the thread stops.
    dropped: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// JS lets go: what was read is dropped, and the thread stops.
    fn let_go(&self) {
        let mut state = self.lock();
        state.dropped = true;
        state.chunks.clear();
        drop(state);
        self.drained.notify_all();
    }
}

impl<T: Send + 'static> ReadAhead<T> {
    /// Read-ahead of `source` (named `what` in a `Closed` error).
    pub fn new(source: Closable<T>, what: &'static str) -> Self {
        Self {
            source,
            what,
            running: Mutex::new(None),
        }
    }

    /// The source, for what is not read ahead.
    pub const fn source(&self) -> &Closable<T> {
        &self.source
    }

    /// A chunk already read, without waiting, if there is one.
    pub fn take(&self) -> napi::Result<Option<NativeChunk>> {
        let Some(queue) = self.queue() else {
            return Ok(None);
        };
        let taken = queue.lock().chunks.pop_front();
        queue.drained.notify_one();
        taken.transpose().map_err(|e| js_error(&e))
    }

    /// The next chunk, waited for off the JS thread; if the read-ahead is not running (or
    /// ended and was taken to the end), a thread starts reading by `read` from where the last
    /// one stopped.
    pub fn next(&self, read: Read<T>) -> napi::Result<ChunkTask> {
        let queue = self.start(read)?;
        Ok(blocking(
            move || {
                let mut state = queue.lock();
                loop {
                    if let Some(chunk) = state.chunks.pop_front() {
                        drop(state);
                        queue.drained.notify_one();
                        return chunk;
                    }
                    if state.ended {
                        // Taken to the end: an empty chunk says so.
                        return Ok(Packed::default().finish());
                    }
                    state = queue
                        .filled
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            },
            std::convert::identity,
        ))
    }

    /// Stop reading ahead (what was read is dropped) and release the source.
    pub fn close(&self) {
        self.stop();
        self.source.close();
    }

    fn queue(&self) -> Option<Arc<Queue>> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The running read-ahead's queue, or a new one whose thread reads from where the last
    /// one stopped.
    fn start(&self, read: Read<T>) -> napi::Result<Arc<Queue>> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = running.as_ref() {
            let state = queue.lock();
            if !(state.ended && state.chunks.is_empty()) {
                return Ok(Arc::clone(queue));
            }
        }
        let queue = Arc::new(Queue::default());
        let (theirs, source, what) = (Arc::clone(&queue), self.source.clone(), self.what);
        thread::Builder::new()
            .name("selene-ahead".into())
            .spawn(move || read_ahead(&theirs, &source, what, &read))
            .map_err(|e| {
                js_error(&Error::io(
                    "spawn read-ahead for",
                    std::path::Path::new(what),
                    e,
                ))
            })?;
        *running = Some(Arc::clone(&queue));
        Ok(queue)
    }
}

impl<T> ReadAhead<T> {
    /// Let the thread go, if one runs.
    fn stop(&self) {
        if let Some(queue) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            queue.let_go();
        }
    }
}

impl<T> Drop for ReadAhead<T> {
    /// JS collected the reader without closing it: the thread stops.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread: read chunks until the end (an empty chunk), an error, or JS letting go, keeping
/// at most `DEPTH` unread.
fn read_ahead<T>(queue: &Queue, source: &Closable<T>, what: &'static str, read: &Read<T>) {
    loop {
        {
            let mut state = queue.lock();
            while state.chunks.len() >= DEPTH && !state.dropped {
                state = queue
                    .drained
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.dropped {
                break;
            }
        }
        let chunk = source.with(what, |r| read(r)).map(Packed::finish);
        let last = chunk.as_ref().map_or(true, |c| c.count == 0);
        let mut state = queue.lock();
        if state.dropped {
            break;
        }
        state.chunks.push_back(chunk);
        state.ended = last;
        drop(state);
        queue.filled.notify_all();
        if last {
            return;
        }
    }
    let mut state = queue.lock();
    state.ended = true;
    drop(state);
    queue.filled.notify_all();
}
