//! Writers closed when the JS environment that opened them goes away.
//!
//! Node and Bun finalize every handle when a worker thread ends; Deno drops a terminated
//! worker's handles without finalizing them, which would leave each open writer's file lock
//! held until the process exits. So every writer opened on a JS thread is listed (weakly) for
//! that thread's environment, and its cleanup hook closes those still open and waits for each
//! close: the queue committed, the file and its lock released before the environment is gone.

use std::cell::RefCell;
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use napi::Env;
use napi::bindgen_prelude::Object;
use napi_derive::napi;
use selene_persist_engine::Committer;

thread_local! {
    /// The writers opened in the environment of this JS thread (one environment per thread).
    static OPEN: RefCell<Vec<Weak<Committer>>> = const { RefCell::new(Vec::new()) };
}

/// Runs as the addon loads into an environment: registers its cleanup hook.
#[napi(module_exports)]
// napi registers it with Node; test builds of this crate leave the registration out.
#[cfg_attr(test, allow(dead_code))]
pub fn close_on_teardown(_exports: Object<'_>, env: Env) -> napi::Result<()> {
    env.add_env_cleanup_hook((), |()| close_all())?;
    Ok(())
}

/// List `committer` for this thread's environment; call on the JS thread that owns its handle.
pub fn register(committer: &Arc<Committer>) {
    OPEN.with_borrow_mut(|open| {
        open.retain(|writer| writer.strong_count() > 0);
        open.push(Arc::downgrade(committer));
    });
}

/// Close every listed writer still open, all at once, and wait until each has closed.
fn close_all() {
    let closing: Vec<mpsc::Receiver<()>> = OPEN
        .take()
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|committer| !committer.is_closed())
        .map(|committer| {
            let (done, closed) = mpsc::channel();
            committer.close(Box::new(move |_| {
                let _ = done.send(());
            }));
            closed
        })
        .collect();
    for closed in closing {
        // An error means the committer thread is gone, which released the lock too.
        let _ = closed.recv();
    }
}
