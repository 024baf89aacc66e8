//! A staged tile output (`TileOutput`) decoded to floats: what the stitcher blends and what a
//! later-phase tile of a phased job continues from.

use crate::v1::TileOutput;
use crate::{decode, f32_from_le_bytes, WireError};

/// A decoded tile output.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedTile {
    /// `[lead, tile window]` values.
    pub values: Vec<f32>,
    /// Ensemble spread, when staged.
    pub spread: Option<Vec<f32>>,
    /// Ensemble members, `[member, lead, tile window]`, when staged.
    pub members: Option<Vec<f32>>,
}

impl StagedTile {
    /// Decodes the bytes of a staged `TileOutput`.
    ///
    /// # Errors
    /// [`WireError`] when they are not a `TileOutput` or its float buffers are ragged.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let output: TileOutput = decode("TileOutput", bytes, usize::MAX)?;
        let values = f32_from_le_bytes("TileOutput.values", &output.values)?;
        let optional = |what, bytes: &[u8]| {
            (!bytes.is_empty())
                .then(|| f32_from_le_bytes(what, bytes))
                .transpose()
        };
        Ok(Self {
            values,
            spread: optional("TileOutput.spread", &output.spread)?,
            members: optional("TileOutput.members", &output.members)?,
        })
    }
}
