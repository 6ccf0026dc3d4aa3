//! The one checksum every format uses: the low 32 bits of xxh3-64.

/// Low 32 bits of xxh3-64 over `bytes`.
#[must_use]
pub fn checksum32(bytes: &[u8]) -> u32 {
    // Truncation is the point: the formats store 32-bit checksums.
    #[allow(clippy::cast_possible_truncation)]
    let low = xxhash_rust::xxh3::xxh3_64(bytes) as u32;
    low
}

#[cfg(test)]
mod tests {
    use super::checksum32;

    #[test]
    fn is_stable_across_builds() {
        // Pinned: a change here silently invalidates every file ever written.
        assert_eq!(checksum32(b""), 0x38D3_94C2);
        assert_eq!(checksum32(b"selene"), checksum32(b"selene"));
        assert_ne!(checksum32(b"selene"), checksum32(b"selenf"));
    }

    #[test]
    fn zeros_do_not_checksum_to_zero() {
        // A zero-filled header must never look valid.
        assert_ne!(checksum32(&[0u8; 36]), 0);
        assert_ne!(checksum32(&[0u8; 20]), 0);
    }
}
