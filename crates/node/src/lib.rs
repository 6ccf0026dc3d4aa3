//! napi-rs binding of the selene-persist engine: conversion only, no logic.
//!
//! Every engine error crosses as a JS `Error` whose message starts `[selene:CODE] `; the
//! TypeScript facade turns it into a `PersistError` with that `code`. The engine's warnings
//! reach JS through `listenWarnings`. Sequences cross as JS
//! numbers (the engine never assigns one above 2^53 - 1).

mod appender;
mod chunk;
mod convert;
mod follow;
mod inspect;
mod pool;
mod prefetch;
mod reader;
mod remote;
mod settle;
mod snapshot;
mod stats;
mod store;
mod task;
mod teardown;

use napi::Status;
use napi::bindgen_prelude::{FnArgs, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use selene_persist_engine::warning::{self, Kind, Subscription, Warning};

/// Largest payload the engine stores, in bytes (256 MiB), for checks made before an entry
/// reaches the engine.
#[napi_derive::napi]
#[allow(clippy::cast_possible_truncation)]
pub const MAX_PAYLOAD_BYTES: u32 = selene_persist_engine::frame::MAX_PAYLOAD_LEN as u32;

/// A shipment's header length in bytes: its frames follow (the engine's `shipment` layout).
#[napi_derive::napi]
#[allow(clippy::cast_possible_truncation)]
pub const SHIPMENT_HEADER_LEN: u32 = selene_persist_engine::shipment::HEADER_LEN as u32;

/// Where each field of an entry sits in a chunk of entries, for the facade to read them by.
#[napi_derive::napi]
// napi registers it with Node; test builds of this crate leave the registration out.
#[cfg_attr(test, allow(dead_code))]
#[must_use]
pub fn chunk_layout() -> chunk::NativeChunkLayout {
    chunk::LAYOUT
}

/// What the sync policy of `options` means for the facade: whether appends are acknowledged
/// before fdatasync, and whether it fdatasyncs on a timer.
#[napi_derive::napi]
// napi registers it with Node; test builds of this crate leave the registration out.
#[cfg_attr(test, allow(dead_code))]
pub fn sync_semantics(
    options: convert::NativeOpenOptions,
) -> napi::Result<convert::NativeSyncSemantics> {
    Ok(selene_persist_engine::WalOptions::try_from(options)?
        .sync
        .into())
}

/// The engine's defaults, each defined once there.
#[napi_derive::napi]
// napi registers it with Node; test builds of this crate leave the registration out.
#[cfg_attr(test, allow(dead_code))]
#[must_use]
pub fn defaults() -> convert::NativeDefaults {
    convert::NativeDefaults::of_engine()
}

/// Every error code the engine reports, for the facade's list of codes to be checked against.
#[napi_derive::napi]
// napi registers it with Node; test builds of this crate leave the registration out.
#[cfg_attr(test, allow(dead_code))]
#[must_use]
pub fn error_codes() -> Vec<String> {
    selene_persist_engine::error::Code::ALL
        .iter()
        .map(|code| code.as_str().to_owned())
        .collect()
}

/// What the callback receives: the kind, the path and the detail.
type Heard = FnArgs<(String, String, String)>;

/// Weak: it never keeps the event loop alive.
type Deliver = ThreadsafeFunction<Heard, (), Heard, Status, false, true>;

/// The registration; dropping it (when the environment that made it goes) unregisters it.
#[napi]
pub struct NativeWarnings {
    _subscription: Subscription,
}

/// Hand every engine warning from now on to `callback`, on the JS thread, until the returned
/// handle is collected.
#[napi(
    catch_unwind,
    ts_args_type = "callback: (kind: string, path: string, detail: string) => void"
)]
// napi registers it with Node; test builds of this crate leave the registration out.
#[cfg_attr(test, allow(dead_code))]
pub fn listen_warnings(callback: Function<'_, Heard, ()>) -> napi::Result<NativeWarnings> {
    let deliver: Deliver = callback
        .build_threadsafe_function::<Heard>()
        .callee_handled::<false>()
        .weak::<true>()
        .build()?;
    let subscription = warning::subscribe(std::sync::Arc::new(move |w: &Warning| {
        let heard = (
            w.kind.as_str().to_owned(),
            w.path.to_string_lossy().into_owned(),
            w.detail.clone(),
        );
        // Fails only while the environment is being torn down, when no one listens.
        let _ = deliver.call(heard.into(), ThreadsafeFunctionCallMode::NonBlocking);
    }));
    Ok(NativeWarnings {
        _subscription: subscription,
    })
}

/// Every warning kind the engine reports, for the facade's documentation to be checked against.
#[napi]
// napi registers it with Node; test builds of this crate leave the registration out.
#[cfg_attr(test, allow(dead_code))]
#[must_use]
pub fn warning_kinds() -> Vec<String> {
    Kind::ALL.iter().map(|k| k.as_str().to_owned()).collect()
}
