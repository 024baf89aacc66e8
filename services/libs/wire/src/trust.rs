//! Who may direct workers and stitchers. A job spec names the input a worker reads and the
//! staging and output locations it writes, so anyone who can publish to the broker could point
//! the cluster anywhere its storage credentials reach. With a job key (a secret shared by the
//! cluster's coordinators, workers and stitchers), coordinators sign every spec they publish or
//! stage (HMAC-SHA256 over its encoding), and workers and stitchers refuse specs without a valid
//! signature. Workers sign their tile results the same way, so a stitcher with a key acts on no
//! forged "tile done" or "tile failed". Without a key, every spec is accepted (the broker's own access control is then the
//! only guard; services say so at start).

use std::sync::Arc;

use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;

use crate::v1::{JobSpec, TileResult, TrainJob};
use crate::WireError;

/// Environment variable holding the cluster's job key.
pub const JOB_KEY_ENV: &str = "TERRAFILL_JOB_KEY";

/// Shortest accepted key, in bytes.
const MIN_KEY_BYTES: usize = 16;

/// A cluster's job key.
#[derive(Clone, PartialEq, Eq)]
pub struct JobKey(Arc<[u8]>);

impl std::fmt::Debug for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobKey(***)")
    }
}

impl JobKey {
    /// A key from secret bytes.
    ///
    /// # Errors
    /// [`WireError::WeakKey`] for fewer than 16 bytes.
    pub fn new(secret: &[u8]) -> Result<JobKey, WireError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(WireError::WeakKey {
                what: JOB_KEY_ENV,
                len: secret.len(),
                min: MIN_KEY_BYTES,
            });
        }
        Ok(JobKey(secret.into()))
    }

    /// The key in [`JOB_KEY_ENV`], if set (and non-empty).
    ///
    /// # Errors
    /// [`WireError::WeakKey`] for a key that is too short.
    pub fn from_env() -> Result<Option<JobKey>, WireError> {
        match std::env::var_os(JOB_KEY_ENV) {
            Some(v) if !v.is_empty() => JobKey::new(v.as_encoded_bytes()).map(Some),
            _ => Ok(None),
        }
    }

    /// The signature of `spec`.
    #[must_use]
    pub fn sign(&self, spec: &JobSpec) -> Vec<u8> {
        self.mac(&spec.encode_to_vec())
            .finalize()
            .into_bytes()
            .to_vec()
    }

    fn mac(&self, message: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(message);
        mac
    }
}

/// The bytes a tile result's signature covers: the result with its signature field empty.
fn result_message(result: &TileResult) -> Vec<u8> {
    TileResult {
        signature: Vec::new(),
        ..result.clone()
    }
    .encode_to_vec()
}

/// Signs a worker's tile result with `key`; empty without a key.
#[must_use]
pub fn sign_result(key: Option<&JobKey>, result: &TileResult) -> Vec<u8> {
    key.map(|k| {
        k.mac(&result_message(result))
            .finalize()
            .into_bytes()
            .to_vec()
    })
    .unwrap_or_default()
}

/// Accepts `result` when there is no key, or when it carries `key`'s signature of it.
///
/// # Errors
/// [`WireError::Untrusted`] naming the result's job.
pub fn verify_result(key: Option<&JobKey>, result: &TileResult) -> Result<(), WireError> {
    let message = result_message(result);
    check(
        key,
        ("a tile result", &result.job_id),
        &message,
        &result.signature,
    )
}

fn check(
    key: Option<&JobKey>,
    (what, job): (&'static str, &str),
    message: &[u8],
    signature: &[u8],
) -> Result<(), WireError> {
    let Some(key) = key else {
        return Ok(());
    };
    let untrusted = |reason| WireError::Untrusted {
        what,
        job: job.chars().take(64).collect(),
        reason,
    };
    if signature.is_empty() {
        return Err(untrusted("it carries no signature"));
    }
    key.mac(message)
        .verify_slice(signature)
        .map_err(|_| untrusted("its signature does not match"))
}

/// Signs `spec` with `key`; empty without a key.
#[must_use]
pub fn sign(key: Option<&JobKey>, spec: &JobSpec) -> Vec<u8> {
    key.map(|k| k.sign(spec)).unwrap_or_default()
}

/// Accepts `spec` when there is no key, or when `signature` is `key`'s signature of it
/// (compared in constant time).
///
/// # Errors
/// [`WireError::Untrusted`] naming the job.
pub fn verify(key: Option<&JobKey>, spec: &JobSpec, signature: &[u8]) -> Result<(), WireError> {
    check(
        key,
        ("the spec", &spec.job_id),
        &spec.encode_to_vec(),
        signature,
    )
}

/// Signs a training job with `key`; empty without a key.
#[must_use]
pub fn sign_train(key: Option<&JobKey>, job: &TrainJob) -> Vec<u8> {
    key.map(|k| k.mac(&job.encode_to_vec()).finalize().into_bytes().to_vec())
        .unwrap_or_default()
}

/// Accepts `job` when there is no key, or when `signature` is `key`'s signature of it: a worker
/// with a key trains (and writes where the job says) only for coordinators that share it.
///
/// # Errors
/// [`WireError::Untrusted`] naming the job.
pub fn verify_train(
    key: Option<&JobKey>,
    job: &TrainJob,
    signature: &[u8],
) -> Result<(), WireError> {
    check(
        key,
        ("the training job", &job.job_id),
        &job.encode_to_vec(),
        signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_signature_is_accepted() -> Result<(), WireError> {
        let key = JobKey::new(b"a cluster secret of some length")?;
        let other = JobKey::new(b"another cluster's secret value")?;
        let spec = JobSpec {
            job_id: "job-1".into(),
            input_url: "s3://b/in.zarr".into(),
            ..JobSpec::default()
        };
        let signature = sign(Some(&key), &spec);
        verify(Some(&key), &spec, &signature)?;
        verify(None, &spec, &[])?;
        assert!(verify(Some(&key), &spec, &[]).is_err());
        assert!(verify(Some(&key), &spec, &sign(Some(&other), &spec)).is_err());
        let mut moved = spec.clone();
        moved.staging_url = "s3://attacker/".into();
        let err = verify(Some(&key), &moved, &signature).err();
        assert!(err.is_some_and(|e| e.to_string().contains("job-1")));
        assert!(JobKey::new(b"short").is_err());
        let mut result = TileResult {
            job_id: "job-1".into(),
            tile_index: 4,
            outcome: 2,
            ..TileResult::default()
        };
        result.signature = sign_result(Some(&key), &result);
        verify_result(Some(&key), &result)?;
        assert!(verify_result(Some(&other), &result).is_err());
        result.tile_index = 5;
        assert!(verify_result(Some(&key), &result).is_err());
        assert_eq!(format!("{key:?}"), "JobKey(***)");
        Ok(())
    }
}
