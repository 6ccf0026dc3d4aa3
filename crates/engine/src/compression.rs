//! Per-entry zstd compression with a size threshold and bounded decompression.

use std::io::Read;

/// When and how payloads are compressed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Compression {
    /// Compress payloads of at least this many bytes; `None` disables compression.
    pub threshold: Option<usize>,
    /// zstd level.
    pub level: i32,
}

/// Default threshold: payloads of 4 KiB and more are compressed.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 4096;

impl Default for Compression {
    fn default() -> Self {
        Self {
            threshold: Some(DEFAULT_COMPRESSION_THRESHOLD),
            level: 1,
        }
    }
}

impl Compression {
    /// Compression turned off.
    #[must_use]
    pub const fn disabled() -> Self {
        Self {
            threshold: None,
            level: 1,
        }
    }

    /// The bytes to store for `payload`: `Some(compressed)` when the payload is at or above the
    /// threshold and compression makes it smaller, `None` to store it as it is.
    #[must_use]
    pub fn compress(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let threshold = self.threshold?;
        if payload.len() < threshold {
            return None;
        }
        zstd::bulk::compress(payload, self.level)
            .ok()
            .filter(|packed| packed.len() < payload.len())
    }
}

/// The decompressed size a zstd frame declares in its header, if it declares one.
#[must_use]
pub fn declared_len(stored: &[u8]) -> Option<u64> {
    zstd::zstd_safe::get_frame_content_size(stored)
        .ok()
        .flatten()
}

/// Decompress `stored`, refusing to produce more than `cap` bytes.
///
/// # Errors
/// `Ok(Err(len))` when the output would exceed `cap` (`len` is how far it got), `Err` when the
/// bytes are not a valid zstd stream.
pub fn decompress_bounded(
    stored: &[u8],
    cap: usize,
) -> std::io::Result<std::result::Result<Vec<u8>, u64>> {
    let decoder = zstd::stream::read::Decoder::new(stored)?;
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(stored.len().saturating_mul(4).min(cap));
    decoder.take(limit).read_to_end(&mut out)?;
    if out.len() > cap {
        return Ok(Err(out.len() as u64));
    }
    Ok(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_inclusive() {
        let c = Compression {
            threshold: Some(100),
            level: 1,
        };
        assert!(c.compress(&[b'a'; 99]).is_none());
        assert!(c.compress(&[b'a'; 100]).is_some());
    }

    #[test]
    fn disabled_never_compresses() {
        assert!(Compression::disabled().compress(&[0u8; 1 << 20]).is_none());
    }

    #[test]
    fn incompressible_payloads_are_stored_as_is() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let noise: Vec<u8> = (0..8192)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        assert!(Compression::default().compress(&noise).is_none());
    }

    #[test]
    fn compressed_frames_declare_their_size() {
        let packed = Compression::default().compress(&[3u8; 9000]).unwrap();
        assert_eq!(declared_len(&packed), Some(9000));
        assert_eq!(declared_len(b"not zstd"), None);
    }

    #[test]
    fn decompression_is_bounded() {
        let packed = zstd::bulk::compress(&vec![7u8; 10_000], 1).unwrap();
        assert_eq!(
            decompress_bounded(&packed, 10_000).unwrap().unwrap().len(),
            10_000
        );
        assert_eq!(
            decompress_bounded(&packed, 9_999).unwrap().unwrap_err(),
            10_000
        );
        assert!(decompress_bounded(b"not zstd at all", 100).is_err());
    }
}
