//! The in-memory decoders: WAL file header, v3 frame header and extent, v4 batch frame (decode
//! and per-record salvage), MANIFEST.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selene_persist_engine::batch_frame::{decode_batch, salvage_batch};
use selene_persist_engine::file_header::FileHeader;
use selene_persist_engine::frame::{FRAME_HEADER_LEN, decode_extent, decode_header};
use selene_persist_engine::manifest::Manifest;

fuzz_target!(|bytes: &[u8]| {
    let _ = FileHeader::decode(bytes);
    let _ = Manifest::decode(bytes, std::path::Path::new("MANIFEST"));
    let _ = decode_batch(bytes, 0);
    let _ = salvage_batch(bytes, 0);
    if let Some(head) = bytes.get(..FRAME_HEADER_LEN)
        && let Ok(header) = decode_header(head.try_into().unwrap(), 0)
        && let Some(extent) = bytes.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.extent_len())
    {
        let _ = decode_extent(&header, extent);
    }
});
