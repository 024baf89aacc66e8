//! The crate's error type.

/// Everything that can go wrong in this crate, with the context needed to act on it.
///
/// None of these are retryable by simply trying again: they name bad input (shapes, checkpoints,
/// configuration) or a compute failure on the device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A tensor operation failed (shape bug, device out of memory, unsupported op).
    #[error("tensor operation failed while {context}")]
    Tensor {
        /// What the crate was doing.
        context: &'static str,
        /// The candle error.
        #[source]
        source: candle_core::Error,
    },
    /// The checkpoint bytes are not a readable safetensors file.
    #[error("checkpoint is not a valid safetensors file ({len} bytes)")]
    CheckpointFormat {
        /// Length of the bytes that were given.
        len: usize,
        /// The parser's error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// The checkpoint parses but its content is wrong (missing metadata, missing or misshapen tensor).
    #[error("checkpoint is invalid: {reason}")]
    CheckpointContent {
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint metadata entry is not the JSON this crate writes.
    #[error("checkpoint metadata entry '{key}' is not valid")]
    CheckpointMetadata {
        /// The metadata key.
        key: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A weight holds NaN or infinity.
    #[error("checkpoint tensor '{name}' holds {count} non-finite values (NaN or infinity)")]
    NonFiniteWeights {
        /// The tensor's name.
        name: String,
        /// How many values are not finite.
        count: usize,
    },
    /// An input array's shape does not fit its values or the model.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// Which input.
        what: String,
        /// What the model or the value count requires.
        expected: Vec<usize>,
        /// What was given.
        got: Vec<usize>,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {field} {reason}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The scene has too few observed pixels to train on.
    #[error("scene has no {tile}x{tile} window with at least {min_fraction} observed pixels to train on")]
    NoTrainingData {
        /// Tile size.
        tile: usize,
        /// The observed fraction that was required.
        min_fraction: f32,
    },
    /// A device string could not be parsed.
    #[error("invalid device '{spec}': expected auto, cpu or cuda:N")]
    DeviceSpec {
        /// What was given.
        spec: String,
    },
    /// The device could not be opened (no CUDA build, no such GPU).
    #[error("cannot open device {spec}")]
    Device {
        /// The requested device.
        spec: String,
        /// The candle error.
        #[source]
        source: candle_core::Error,
    },
    /// A shard result of a training round does not belong to the version being averaged.
    #[error("shard result {shard} does not belong to this round: {reason}")]
    ShardMismatch {
        /// Index of the shard result.
        shard: usize,
        /// What differs.
        reason: String,
    },
    /// A training scene could not be read.
    #[error("reading training windows of {scene}: {reason}")]
    Read {
        /// The scene (its URL).
        scene: String,
        /// What failed.
        reason: String,
    },
    /// Training diverged.
    #[error("training diverged: loss is {loss} at step {step}")]
    Diverged {
        /// The step.
        step: usize,
        /// The loss value.
        loss: f32,
    },
}

/// Attach a context to candle results.
pub(crate) trait TensorContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, ModelError>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn ctx(self, context: &'static str) -> Result<T, ModelError> {
        self.map_err(|source| ModelError::Tensor { context, source })
    }
}
