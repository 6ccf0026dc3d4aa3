//! Buffers kept for reuse. A chunk's buffer handed to JS comes back here when JS collects it,
//! so the next chunk is written into memory already mapped: fresh pages cost a page fault
//! each, which on these VMs costs more than reading and verifying the entries in them.

use std::sync::{Mutex, PoisonError};

use napi::bindgen_prelude::{Buffer, BufferSlice, JsValue, ToNapiValue, TypeName, ValueType};
use napi::{Env, sys};

/// Bytes of spare buffers kept at most: a replay's worth of chunks in flight (its read-ahead,
/// the batches JS holds, those awaiting collection), not a cache that outlives it by much.
const KEEP_BYTES: usize = 16 << 20;

/// Larger buffers are freed rather than kept.
const MAX_KEPT_CAPACITY: usize = 8 << 20;

static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for `capacity` bytes: a spare one if one is that large.
pub fn take(capacity: usize) -> Vec<u8> {
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    match spare.iter().position(|b| b.capacity() >= capacity) {
        Some(at) => spare.swap_remove(at),
        None => Vec::with_capacity(capacity),
    }
}

/// Keep `buffer` for a later [`take`], unless enough are kept.
pub fn give_back(mut buffer: Vec<u8>) {
    if buffer.capacity() > MAX_KEPT_CAPACITY {
        return;
    }
    buffer.clear();
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    let kept: usize = spare.iter().map(Vec::capacity).sum();
    if kept + buffer.capacity() <= KEEP_BYTES {
        spare.push(buffer);
    }
}

/// Bytes that cross to JS as a `Buffer` over them, without a copy, and return to the pool
/// when JS collects it (where a runtime refuses external buffers, as Electron's does, they
/// are copied and return at once).
pub struct PooledBuffer(pub Vec<u8>);

impl TypeName for PooledBuffer {
    fn type_name() -> &'static str {
        "Buffer"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for PooledBuffer {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let mut bytes = val.0;
        if bytes.is_empty() {
            give_back(bytes);
            // SAFETY: the env napi passed in.
            return unsafe { Buffer::to_napi_value(env, Buffer::from(Vec::new())) };
        }
        let (data, len) = (bytes.as_mut_ptr(), bytes.len());
        // SAFETY: `data` stays valid for `len` bytes until the finalizer takes `bytes` back;
        // nothing else touches it meanwhile.
        let slice = unsafe {
            BufferSlice::from_external(&Env::from_raw(env), data, len, bytes, |_, bytes| {
                give_back(bytes);
            })
        }?;
        Ok(slice.value().value)
    }
}
