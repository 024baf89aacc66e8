//! Message broker for terrafill: durable work queues with manual ack, retry and dead-lettering,
//! plus fan-out events, behind one object-safe trait ([`Broker`]).
//!
//! Two implementations:
//! - [`AmqpBroker`]: RabbitMQ over AMQP 0-9-1 (lapin); quorum queues, publisher confirms,
//!   reconnects with jittered back-off. The only code in the workspace that touches lapin.
//! - [`InProcessBroker`]: the same semantics in memory, for embedded (single-process) mode.
//!
//! The broker moves opaque bytes and string headers; it knows nothing about terrafill messages.
//! Delivery is at-least-once: a message whose delivery is not acked (consumer crash, dropped
//! [`Subscription`], closed channel) is delivered again, so consumers must be idempotent.

mod amqp;
mod error;
mod inproc;
pub mod retry;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use amqp::{redact_url, AmqpBroker, AmqpConfig};
pub use error::{BoxError, BrokerError};
pub use inproc::{InProcessBroker, InProcessConfig};

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Suffix of the dead-letter queue that [`Broker::declare_queue`] declares beside each queue.
pub const DEAD_LETTER_SUFFIX: &str = ".dead-letter";
/// Header (RabbitMQ quorum queues) counting earlier failed deliveries of a message.
pub const HEADER_DELIVERY_COUNT: &str = "x-delivery-count";
/// Header set on dead-lettered messages: why the message was dead-lettered
/// (`rejected` for [`Delivery::dead_letter`], `delivery_limit` when retries ran out).
pub const HEADER_DEATH_REASON: &str = "x-first-death-reason";
/// Header set on dead-lettered messages: the queue the message was dead-lettered from.
pub const HEADER_DEATH_QUEUE: &str = "x-first-death-queue";
/// Default maximum message body size: 1 MiB, the same as `wire::MAX_MESSAGE_BYTES` (terrafill's
/// tasks and events are a few hundred bytes; tile data travels through object storage), so a
/// message the broker accepts is one every service decodes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
/// URL scheme selecting the in-process broker in [`connect`].
pub const INPROC_SCHEME: &str = "inproc://";

/// The dead-letter queue of `queue`: `<queue>.dead-letter`.
#[must_use]
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}{DEAD_LETTER_SUFFIX}")
}

/// A message to publish: opaque body plus string headers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The payload.
    pub body: Bytes,
    /// Application headers (sent as an AMQP field table of long strings).
    pub headers: BTreeMap<String, String>,
}

impl Message {
    /// A message with a body and no headers.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            headers: BTreeMap::new(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("body_len", &self.body.len())
            .field("headers", &self.headers)
            .finish()
    }
}

/// What happens when a queue with a length limit is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Refuse new messages: publish fails with [`BrokerError::PublishRejected`] (retryable).
    #[default]
    RejectPublish,
    /// Drop (dead-letter) the oldest messages to make room.
    DropHead,
}

/// Settings of a durable work queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Deliveries that may fail ([`Delivery::retry`], consumer gone) before the message goes to
    /// the dead-letter queue instead of back to the queue. Default 5.
    pub delivery_limit: u32,
    /// Maximum total size of ready messages in bytes; `None` = unlimited.
    pub max_length_bytes: Option<u64>,
    /// Maximum number of ready messages; `None` = unlimited.
    pub max_length: Option<u64>,
    /// Behaviour when a limit above is reached.
    pub overflow: Overflow,
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            delivery_limit: 5,
            max_length_bytes: None,
            max_length: None,
            overflow: Overflow::RejectPublish,
        }
    }
}

/// Declares each of `queues` with the default [`QueueSpec`]: every service declares the whole
/// topology (`wire::QUEUES`) this way, so no two of them can disagree on a queue's settings.
///
/// # Errors
/// As [`Broker::declare_queue`], for the first queue that fails.
pub async fn declare_all(broker: &dyn Broker, queues: &[&str]) -> Result<(), BrokerError> {
    let spec = QueueSpec::default();
    for queue in queues {
        broker.declare_queue(queue, &spec).await?;
    }
    Ok(())
}

/// A message broker: durable work queues and fan-out events.
///
/// Implementations are cheap to share: services hold an `Arc<dyn Broker>`.
#[async_trait]
pub trait Broker: Send + Sync + std::fmt::Debug {
    /// Declares a durable work queue and its dead-letter queue `<queue>.dead-letter`
    /// (RabbitMQ: quorum queues with `x-delivery-limit` and dead-lettering to the DLQ).
    /// Idempotent for the same spec.
    ///
    /// # Errors
    /// [`BrokerError::QueueMismatch`] if the queue exists with other settings;
    /// [`BrokerError::InvalidName`]; connection errors.
    async fn declare_queue(&self, queue: &str, spec: &QueueSpec) -> Result<(), BrokerError>;

    /// Deletes a queue declared with [`Broker::declare_queue`] and its dead-letter queue,
    /// with any messages in them. Consumers of the queue see the end of their subscription.
    /// Deleting a missing queue succeeds.
    ///
    /// # Errors
    /// [`BrokerError::InvalidName`]; connection errors.
    async fn delete_queue(&self, queue: &str) -> Result<(), BrokerError>;

    /// Publishes a persistent message to a queue; returns once the broker has taken
    /// responsibility for it (publisher confirm).
    ///
    /// # Errors
    /// [`BrokerError::MessageTooLarge`] over [`Broker::max_message_bytes`];
    /// [`BrokerError::Unroutable`] if the queue does not exist;
    /// [`BrokerError::PublishRejected`] if the queue is full; connection errors after
    /// reconnect attempts ran out.
    async fn publish(&self, queue: &str, msg: Message) -> Result<(), BrokerError>;

    /// Consumes a queue with manual acknowledgement; at most `prefetch` deliveries are unsettled
    /// at a time (0 = unlimited).
    ///
    /// # Errors
    /// [`BrokerError::QueueNotFound`]; connection errors.
    async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, BrokerError>;

    /// Publishes an event to a fan-out exchange (created on first use). Events are
    /// best-effort: with no subscriber they are dropped, and they are not persisted.
    ///
    /// # Errors
    /// [`BrokerError::MessageTooLarge`]; [`BrokerError::InvalidName`]; connection errors.
    async fn publish_event(&self, exchange: &str, msg: Message) -> Result<(), BrokerError>;

    /// Subscribes to a fan-out exchange with a private queue that lives as long as the
    /// subscription. Every subscriber gets every event published after this returns. Event
    /// deliveries need no ack ([`Delivery::ack`] is a no-op for them).
    ///
    /// # Errors
    /// [`BrokerError::InvalidName`]; connection errors.
    async fn subscribe_events(&self, exchange: &str) -> Result<Box<dyn Subscription>, BrokerError>;

    /// Deletes a fan-out exchange created by [`Broker::publish_event`] or
    /// [`Broker::subscribe_events`]. Deleting a missing exchange succeeds.
    ///
    /// # Errors
    /// [`BrokerError::InvalidName`]; connection errors.
    async fn delete_exchange(&self, exchange: &str) -> Result<(), BrokerError>;

    /// Number of messages ready for delivery in a queue (not counting unacked ones).
    ///
    /// # Errors
    /// [`BrokerError::QueueNotFound`]; connection errors.
    async fn queue_depth(&self, queue: &str) -> Result<u64, BrokerError>;

    /// Number of consumers (subscriptions from [`Broker::consume`], on any connection) of a queue.
    ///
    /// # Errors
    /// [`BrokerError::QueueNotFound`]; connection errors.
    async fn queue_consumers(&self, queue: &str) -> Result<u64, BrokerError>;

    /// The largest message body this broker accepts, in bytes.
    fn max_message_bytes(&self) -> usize;

    /// Whether the broker is reachable now, as far as this client knows (false while it
    /// reconnects after losing the connection). Default: always (in-process brokers).
    fn is_connected(&self) -> bool {
        true
    }

    /// Closes the connection cleanly (warm shutdown); later calls may fail. Default: nothing.
    ///
    /// # Errors
    /// Connection errors while closing.
    async fn close(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}

/// A stream of deliveries from a queue or an event exchange.
///
/// Dropping a subscription returns its unsettled deliveries to the queue (like a closed AMQP
/// channel); they are redelivered, to this or another consumer.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery; `None` when the subscription has ended for good (queue deleted).
    /// `Some(Err(_))` reports a problem (e.g. the broker unreachable for a long time); the
    /// subscription keeps trying and may be polled again.
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>>;
}

/// One delivered message. Settle it exactly once with [`Delivery::ack`], [`Delivery::retry`] or
/// [`Delivery::dead_letter`]; a delivery dropped unsettled stays unacked until its subscription
/// ends, then is redelivered.
pub struct Delivery {
    /// The payload.
    pub body: Bytes,
    /// The message's string headers (numeric broker headers are rendered as decimal strings;
    /// `x-delivery-count` is in [`Delivery::delivery_count`] instead).
    pub headers: BTreeMap<String, String>,
    /// Whether this message was delivered before.
    pub redelivered: bool,
    /// How many earlier deliveries of this message failed (returned to the queue); 0 on the
    /// first delivery. From `x-delivery-count` on RabbitMQ.
    pub delivery_count: u32,
    queue: Arc<str>,
    settler: Settler,
}

pub(crate) enum Settler {
    InProc(inproc::InProcSettler),
    Amqp(lapin::Acker),
    /// Event deliveries: nothing to settle.
    None,
}

/// The ways of settling a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Retry,
    DeadLetter,
}

impl Settle {
    fn op(self) -> &'static str {
        match self {
            Settle::Ack => "ack",
            Settle::Retry => "retry",
            Settle::DeadLetter => "dead-letter",
        }
    }
}

impl Delivery {
    /// The queue (or private event queue) this delivery came from.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Acknowledges the delivery: the message is done and removed from the queue.
    ///
    /// # Errors
    /// [`BrokerError::Settle`] (retryable) if the channel the delivery came on has closed; the
    /// broker then redelivers the message.
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.settle(Settle::Ack).await
    }

    /// Returns the message to the queue for another try; counts toward the queue's
    /// delivery limit, past which the message goes to the dead-letter queue.
    ///
    /// # Errors
    /// As [`Delivery::ack`].
    pub async fn retry(self) -> Result<(), BrokerError> {
        self.settle(Settle::Retry).await
    }

    /// Rejects the message without requeueing: it goes to the dead-letter queue (poison
    /// messages).
    ///
    /// # Errors
    /// As [`Delivery::ack`].
    pub async fn dead_letter(self) -> Result<(), BrokerError> {
        self.settle(Settle::DeadLetter).await
    }

    async fn settle(self, how: Settle) -> Result<(), BrokerError> {
        match self.settler {
            Settler::InProc(s) => s.settle(how, &self.queue),
            Settler::Amqp(acker) => amqp::settle(&acker, how, &self.queue).await,
            Settler::None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.queue)
            .field("body_len", &self.body.len())
            .field("headers", &self.headers)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .finish()
    }
}

/// Opens a broker from a URL: `None` or `inproc://` gives a new [`InProcessBroker`],
/// `amqp://` / `amqps://` an [`AmqpBroker`] with [`AmqpConfig::default`].
///
/// # Errors
/// [`BrokerError::InvalidUrl`] for other schemes; connection errors from
/// [`AmqpBroker::connect`].
pub async fn connect(url: Option<&str>) -> Result<Arc<dyn Broker>, BrokerError> {
    match url {
        None => Ok(Arc::new(InProcessBroker::new())),
        Some(u) if u.starts_with(INPROC_SCHEME) => Ok(Arc::new(InProcessBroker::new())),
        Some(u) if u.starts_with("amqp://") || u.starts_with("amqps://") => Ok(Arc::new(
            AmqpBroker::connect(u, AmqpConfig::default()).await?,
        )),
        Some(u) => Err(BrokerError::InvalidUrl {
            url: redact_url(u),
            reason: "expected inproc://, amqp:// or amqps://".into(),
        }),
    }
}

/// Checks a queue or exchange name: non-empty, at most 255 bytes (AMQP short string).
pub(crate) fn check_name(name: &str) -> Result<(), BrokerError> {
    if name.is_empty() {
        return Err(BrokerError::InvalidName {
            name: name.into(),
            reason: "empty",
        });
    }
    // The dead-letter queue name must fit too.
    if name.len() + DEAD_LETTER_SUFFIX.len() > 255 {
        return Err(BrokerError::InvalidName {
            name: name.into(),
            reason: "longer than 243 bytes (255 with the dead-letter suffix)",
        });
    }
    Ok(())
}

/// Checks a message's size against a limit.
pub(crate) fn check_size(target: &str, msg: &Message, limit: usize) -> Result<(), BrokerError> {
    if msg.body.len() > limit {
        return Err(BrokerError::MessageTooLarge {
            target: target.into(),
            size: msg.body.len(),
            limit,
        });
    }
    Ok(())
}

/// Checks header keys: non-empty and at most 255 bytes (AMQP field-table keys).
pub(crate) fn check_headers(target: &str, msg: &Message) -> Result<(), BrokerError> {
    for key in msg.headers.keys() {
        let reason = if key.is_empty() {
            "empty key"
        } else if key.len() > 255 {
            "key longer than 255 bytes"
        } else {
            continue;
        };
        let mut end = key.len().min(64);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        return Err(BrokerError::InvalidHeader {
            target: target.into(),
            key: key[..end].into(),
            reason,
        });
    }
    Ok(())
}
