//! Checked encoding and decoding of wire messages.

use prost::Message;

/// Why a message or spec was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes are not a valid message of the expected type.
    #[error("undecodable {what} ({len} bytes): {source}")]
    Decode {
        /// Expected message type.
        what: &'static str,
        /// Size of the payload.
        len: usize,
        /// prost's reason.
        source: prost::DecodeError,
    },
    /// The payload is larger than any valid message of its kind.
    #[error("{what} of {len} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// Expected message type.
        what: &'static str,
        /// Size of the payload.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// A required field is absent.
    #[error("{what} lacks required field `{field}`")]
    MissingField {
        /// Message type.
        what: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A job id that could escape its storage prefix or is empty.
    #[error("invalid job id {id:?}: use 1-64 characters of [A-Za-z0-9._-], not starting with '.'")]
    InvalidJobId {
        /// The rejected id (truncated).
        id: String,
    },
    /// A job spec that cannot describe a real job.
    #[error("job {job}: {reason}")]
    BadSpec {
        /// Job id as given.
        job: String,
        /// What is wrong.
        reason: String,
    },
    /// A job spec not signed with this cluster's job key (forged, or from another cluster).
    #[error(
        "{what} of job {job} is not signed with this cluster's job key ({reason}); refusing it"
    )]
    Untrusted {
        /// What was checked: the job's spec or a tile result.
        what: &'static str,
        /// Job id as given.
        job: String,
        /// Missing or wrong signature.
        reason: &'static str,
    },
    /// A job key too short to be a secret.
    #[error("{what} must hold at least {min} bytes of secret, not {len}")]
    WeakKey {
        /// Where the key came from.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// A float buffer whose length is not a multiple of 4.
    #[error("{what}: {len} bytes is not a whole number of float32 values")]
    RaggedFloats {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}

impl WireError {
    /// Wire errors are properties of the bytes: retrying never helps.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Encodes a message to bytes.
pub fn encode<M: Message>(msg: &M) -> bytes::Bytes {
    bytes::Bytes::from(msg.encode_to_vec())
}

/// Decodes `bytes` as `M`, refusing payloads over `limit` bytes before parsing.
///
/// # Errors
/// [`WireError::Oversized`] or [`WireError::Decode`], naming `what`.
pub fn decode<M: Message + Default>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<M, WireError> {
    if bytes.len() > limit {
        return Err(WireError::Oversized {
            what,
            len: bytes.len(),
            limit,
        });
    }
    M::decode(bytes).map_err(|source| WireError::Decode {
        what,
        len: bytes.len(),
        source,
    })
}

/// Little-endian bytes of a float buffer (bit-exact).
pub fn f32_to_le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Floats from little-endian bytes (bit-exact).
///
/// # Errors
/// [`WireError::RaggedFloats`] when the length is not a multiple of 4.
pub fn f32_from_le_bytes(what: &'static str, bytes: &[u8]) -> Result<Vec<f32>, WireError> {
    if bytes.len() % 4 != 0 {
        return Err(WireError::RaggedFloats {
            what,
            len: bytes.len(),
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    #[test]
    fn garbage_is_a_decode_error_and_big_payloads_are_refused() {
        let garbage = [0xffu8, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            decode::<v1::TileTask>("TileTask", &garbage, 1024),
            Err(WireError::Decode { .. })
        ));
        assert!(matches!(
            decode::<v1::TileTask>("TileTask", &[0; 2048], 1024),
            Err(WireError::Oversized { .. })
        ));
    }

    #[test]
    fn floats_round_trip_bit_exactly() -> Result<(), WireError> {
        let v = [f32::NAN, -0.0, 1.5e-42, f32::MAX];
        let back = f32_from_le_bytes("t", &f32_to_le_bytes(&v))?;
        assert!(v.iter().zip(&back).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(f32_from_le_bytes("t", &[0; 5]).is_err());
        Ok(())
    }
}
