//! napi-rs binding of the selene-persist engine: conversion only, no logic.
//!
//! Every engine error crosses as a JS `Error` whose message starts `[selene:CODE] `; the
//! TypeScript facade turns it into a `PersistError` with that `code`. Sequences cross as JS
//! numbers (the engine never assigns one above 2^53 - 1).

mod appender;
mod convert;
mod inspect;
mod reader;
mod settle;
mod snapshot;
mod store;
mod task;

/// Largest payload the engine stores, in bytes (256 MiB), for checks made before an entry
/// reaches the engine.
#[napi_derive::napi]
#[allow(clippy::cast_possible_truncation)]
pub const MAX_PAYLOAD_BYTES: u32 = selene_persist_engine::frame::MAX_PAYLOAD_LEN as u32;
