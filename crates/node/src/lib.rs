//! napi-rs binding of the selene-persist engine: conversion only, no logic.
//!
//! Every engine error crosses as a JS `Error` whose message starts `[selene:CODE] `; the
//! TypeScript facade turns it into a `PersistError` with that `code`. Sequences cross as JS
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
