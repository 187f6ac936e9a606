//! SHA-256 of API tokens (they are stored only hashed), from the RustCrypto `sha2` crate: no hand-rolled
//! cryptography.

use sha2::{Digest, Sha256};

/// Lower-case hex of the SHA-256 digest of `data`.
pub fn hex_digest(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::hex_digest;

    #[test]
    fn nist_vectors() {
        assert_eq!(hex_digest(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex_digest(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
