//! Settling appends in bursts. napi-rs gives every deferred Promise a threadsafe function of
//! its own, so a group of N appends would cost N wake-ups of the JS thread, each with its own
//! microtask checkpoint. Instead each append carries a ticket from JS; the committer's replies
//! go to a mailbox, and one threadsafe call per burst hands every outcome in it to a JS
//! callback, which settles the Promises it keeps by ticket.

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use napi::Status;
use napi::bindgen_prelude::{Float64Array, FnArgs, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use selene_persist_engine::Reply;

use crate::convert::{error_message, to_f64};

/// A request's ticket and the first sequence it got, or why it failed.
type Outcome = (f64, std::result::Result<f64, String>);

/// What the JS callback receives: `[ticket, first sequence or -1, ...]` pairs, and the
/// messages of the failed ones in the same order.
pub type Settled = FnArgs<(Float64Array, Vec<String>)>;

/// The outcomes in a mailbox, taken at once: the same pairs and messages as [`Settled`].
#[napi(object)]
pub struct NativeSettled {
    /// `[ticket, first sequence or -1, ...]` pairs.
    pub settled: Float64Array,
    /// The messages of the failed ones, in order.
    pub failures: Vec<String>,
}

/// Weak: it never keeps the event loop alive by itself (the facade holds it while Promises
/// are pending), so an idle writer does not stop the process from exiting.
type Deliver = ThreadsafeFunction<(), (), Settled, Status, false, true>;

struct Shared {
    mailbox: Arc<Mutex<Vec<Outcome>>>,
    /// `None` once released: the function holds its JS callback (and through it the handle
    /// that listens) until it is released, so a closed writer would never be collected.
    deliver: Mutex<Option<Deliver>>,
}

/// One writer's mailbox of outcomes and the JS callback that drains it.
#[derive(Clone)]
pub struct Settler {
    shared: Arc<Shared>,
}

impl Settler {
    /// Deliver outcomes to `callback` (on the JS thread).
    ///
    /// # Errors
    /// If napi cannot create the threadsafe function.
    pub fn new(callback: &Function<'_, Settled, ()>) -> napi::Result<Self> {
        let mailbox = Arc::new(Mutex::new(Vec::new()));
        let drained = Arc::clone(&mailbox);
        let deliver = callback
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |_| {
                let NativeSettled { settled, failures } = unpack(take(&drained));
                Ok((settled, failures).into())
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                mailbox,
                deliver: Mutex::new(Some(deliver)),
            }),
        })
    }

    /// Record `outcome` for `ticket`; the first outcome into an empty mailbox schedules the
    /// callback, which takes everything that arrived by the time it runs.
    pub fn settle(&self, ticket: f64, outcome: std::result::Result<f64, String>) {
        let first = {
            let mut mailbox = lock(&self.shared.mailbox);
            mailbox.push((ticket, outcome));
            mailbox.len() == 1
        };
        if first {
            // Fails only while the environment is being torn down, when no one is waiting.
            if let Some(deliver) = lock(&self.shared.deliver).as_ref() {
                let _ = deliver.call((), ThreadsafeFunctionCallMode::NonBlocking);
            }
        }
    }

    /// Let go of the JS callback once the writer has closed and answered everything: calls
    /// already queued are still delivered, then the callback and what it holds can be collected.
    pub fn release(&self) {
        drop(lock(&self.shared.deliver).take());
    }

    /// Every outcome in the mailbox now, for a caller on the JS thread that cannot wait for
    /// the callback (the callback, when it runs, finds them gone).
    pub fn drain(&self) -> NativeSettled {
        unpack(take(&self.shared.mailbox))
    }

    /// The committer's reply for the request with `ticket`.
    pub fn reply(&self, ticket: f64) -> Reply<RangeInclusive<u64>> {
        let settler = self.clone();
        Box::new(move |outcome| {
            settler.settle(
                ticket,
                outcome
                    .map(|range| to_f64(*range.start()))
                    .map_err(|e| error_message(&e)),
            );
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn take(mailbox: &Mutex<Vec<Outcome>>) -> Vec<Outcome> {
    std::mem::take(&mut *lock(mailbox))
}

fn unpack(outcomes: Vec<Outcome>) -> NativeSettled {
    let mut pairs = Vec::with_capacity(outcomes.len() * 2);
    let mut failures = Vec::new();
    for (ticket, outcome) in outcomes {
        pairs.push(ticket);
        match outcome {
            Ok(first) => pairs.push(first),
            Err(message) => {
                pairs.push(-1.0);
                failures.push(message);
            }
        }
    }
    NativeSettled {
        settled: Float64Array::new(pairs),
        failures,
    }
}
