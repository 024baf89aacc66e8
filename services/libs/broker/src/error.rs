//! The one error type of this crate.

use std::time::Duration;

/// A boxed source error (keeps lapin types out of the public API).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong talking to a broker. Every variant names the thing at fault (URL with the
/// password redacted, queue, exchange, size) and [`BrokerError::is_retryable`] says whether trying
/// the same operation again later may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker URL could not be parsed or has an unsupported scheme.
    #[error("invalid broker URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The broker could not be reached or refused the connection.
    #[error("cannot connect to broker {url}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// Whether retrying may help (network errors: yes; bad credentials or vhost: no).
        retryable: bool,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// No connection could be established within the configured time.
    #[error("cannot connect to broker {url}: no connection within {timeout:?} (last error: {last_error})")]
    ConnectTimeout {
        /// The URL, password redacted.
        url: String,
        /// The time limit that passed.
        timeout: Duration,
        /// The last error seen while trying, or "timed out" if an attempt hung.
        last_error: String,
    },
    /// A queue or exchange name is not acceptable (empty, longer than 255 bytes).
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A header key or value cannot be sent (key longer than 255 bytes).
    #[error("invalid header {key:?} on a message for {target}: {reason}")]
    InvalidHeader {
        /// The queue or exchange the message was for.
        target: String,
        /// The rejected header key (truncated to 64 bytes).
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The message body is larger than the configured maximum.
    #[error("message for {target} is {size} bytes, over the limit of {limit} bytes")]
    MessageTooLarge {
        /// The queue or exchange the message was for.
        target: String,
        /// Body size in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The queue does not exist (declare it first).
    #[error("queue {queue} does not exist")]
    QueueNotFound {
        /// The queue name.
        queue: String,
    },
    /// The queue exists with different arguments than requested.
    #[error("queue {queue} already exists with different settings: {detail}")]
    QueueMismatch {
        /// The queue name.
        queue: String,
        /// The broker's explanation.
        detail: String,
    },
    /// A mandatory publish could not be routed to any queue (the queue does not exist).
    #[error("message to queue {queue} was unroutable (does the queue exist?)")]
    Unroutable {
        /// The queue name.
        queue: String,
    },
    /// The broker refused to take responsibility for a published message (e.g. the queue is
    /// full with `reject-publish` overflow). Retrying later may succeed.
    #[error(
        "broker refused message for {target} (negative confirm: queue full or broker overloaded)"
    )]
    PublishRejected {
        /// The queue or exchange.
        target: String,
    },
    /// The broker did not answer in time.
    #[error("{op} on {target} timed out after {timeout:?}")]
    Timeout {
        /// The operation (e.g. "publish").
        op: &'static str,
        /// The queue or exchange.
        target: String,
        /// The time limit.
        timeout: Duration,
    },
    /// Acknowledging a delivery failed, typically because the channel it came from has closed.
    /// The broker redelivers such a message, so the failure is retryable at the level of the
    /// message (process the redelivery), not of the ack.
    #[error("cannot {op} delivery from queue {queue}: {reason}")]
    Settle {
        /// "ack", "retry" or "dead-letter".
        op: &'static str,
        /// The queue the delivery came from.
        queue: String,
        /// Why.
        reason: String,
    },
    /// A broker operation failed.
    #[error("{op} on {target} failed")]
    Operation {
        /// The operation (e.g. "queue.declare").
        op: &'static str,
        /// The queue or exchange.
        target: String,
        /// Whether retrying may help.
        retryable: bool,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The broker handle has been closed.
    #[error("broker is closed")]
    Closed,
}

impl BrokerError {
    /// Whether trying the same operation again later may succeed (connection problems,
    /// timeouts, full queues), as opposed to errors that need a code or config change.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { retryable, .. } | Self::Operation { retryable, .. } => *retryable,
            Self::ConnectTimeout { .. }
            | Self::PublishRejected { .. }
            | Self::Timeout { .. }
            | Self::Settle { .. } => true,
            Self::InvalidUrl { .. }
            | Self::InvalidName { .. }
            | Self::InvalidHeader { .. }
            | Self::MessageTooLarge { .. }
            | Self::QueueNotFound { .. }
            | Self::QueueMismatch { .. }
            | Self::Unroutable { .. }
            | Self::Closed => false,
        }
    }
}
