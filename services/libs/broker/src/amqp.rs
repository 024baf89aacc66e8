//! RabbitMQ over AMQP 0-9-1 (lapin): quorum queues, publisher confirms, reconnects.

use crate::retry::{Backoff, BackoffConfig};
use crate::{
    check_headers, check_name, check_size, dead_letter_queue, Broker, BrokerError, Delivery,
    Message, Overflow, QueueSpec, Settle, Settler, Subscription, DEFAULT_MAX_MESSAGE_BYTES,
    HEADER_DELIVERY_COUNT,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ErrorKind, ExchangeKind,
};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Settings of an [`AmqpBroker`].
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpConfig {
    /// How long [`AmqpBroker::connect`] keeps trying before it fails (default 10 s).
    pub connect_timeout: Duration,
    /// How long an operation keeps reconnecting after the connection dropped before it fails
    /// with a retryable error (default 60 s).
    pub reconnect_timeout: Duration,
    /// Limit on one broker round trip, such as waiting for a publisher confirm (default 30 s).
    pub operation_timeout: Duration,
    /// Largest message body accepted on publish and consume, in bytes (default 16 MiB).
    pub max_message_bytes: usize,
    /// Publishes awaiting their confirm at any time (default 128; RabbitMQ's own benchmarks
    /// peak at about 200 unconfirmed).
    pub max_unconfirmed: usize,
    /// Heartbeat interval requested unless the URL sets `?heartbeat=` (default 30 s); a dead
    /// connection is noticed after about two intervals.
    pub heartbeat: Duration,
    /// Events buffered in each event subscriber's private queue; older ones are dropped
    /// beyond it (default 4096).
    pub event_buffer: u32,
    /// Back-off between reconnect attempts (default 100 ms → 10 s).
    pub backoff: BackoffConfig,
    /// Connection name shown in the RabbitMQ management UI.
    pub connection_name: String,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            reconnect_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(30),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_unconfirmed: 128,
            heartbeat: Duration::from_secs(30),
            event_buffer: 4096,
            backoff: BackoffConfig::default(),
            connection_name: "terrafill".into(),
        }
    }
}

/// The URL with any password replaced by `***`, for logs and errors.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.into();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.into();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.into(),
    }
}

/// A RabbitMQ broker over one AMQP connection: a publisher channel in confirm mode shared by
/// all publishes, one channel per subscription. After the connection drops, operations
/// reconnect with jittered exponential back-off and subscriptions re-subscribe.
///
/// Deliveries received on a channel that has since died cannot be settled: their
/// [`Delivery::ack`] returns a retryable [`BrokerError::Settle`], and RabbitMQ redelivers the
/// message (with a higher `x-delivery-count`).
#[derive(Clone)]
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

struct Inner {
    uri: AMQPUri,
    redacted: String,
    config: AmqpConfig,
    session: tokio::sync::Mutex<Option<Session>>,
    unconfirmed: Semaphore,
}

#[derive(Clone)]
struct Session {
    connection: Arc<Connection>,
    publisher: Channel,
    /// Exchanges declared on this connection.
    exchanges: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBroker")
            .field("url", &self.inner.redacted)
            .finish_non_exhaustive()
    }
}

/// An operation's failure: worth retrying on a fresh connection, or final.
enum Failure {
    Transient(lapin::Error),
    Final(BrokerError),
}

fn soft_error(e: &lapin::Error) -> Option<&AMQPSoftError> {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => Some(soft),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

/// Whether an error means the connection or channel went away (as opposed to the broker
/// refusing the operation).
fn is_connection_loss(e: &lapin::Error) -> bool {
    match e.kind() {
        ErrorKind::IOError(_)
        | ErrorKind::InvalidChannel(_)
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::MissingHeartbeatError => true,
        // Connection-level errors close the connection (e.g. CONNECTION_FORCED on restart).
        ErrorKind::ProtocolError(amqp) => matches!(amqp.kind(), AMQPErrorKind::Hard(_)),
        _ => false,
    }
}

fn classify(e: lapin::Error, op: &'static str, target: &str) -> Failure {
    if is_connection_loss(&e) {
        Failure::Transient(e)
    } else {
        Failure::Final(BrokerError::Operation {
            op,
            target: target.into(),
            retryable: false,
            source: Box::new(e),
        })
    }
}

fn short(name: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(name).map_err(|_| BrokerError::InvalidName {
        name: name.into(),
        reason: "longer than 255 bytes",
    })
}

fn to_field_table(headers: &BTreeMap<String, String>) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        // Keys were checked by `check_headers`.
        if let Ok(key) = ShortString::try_new(k.as_str()) {
            table.insert(key, AMQPValue::LongString(v.as_str().into()));
        }
    }
    table
}

/// String headers and the delivery count of a received message.
fn from_field_table(table: Option<&FieldTable>) -> (BTreeMap<String, String>, u32) {
    let mut headers = BTreeMap::new();
    let mut count = 0;
    let Some(table) = table else {
        return (headers, count);
    };
    for (k, v) in table.inner() {
        let text = match v {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.as_str().to_owned(),
            AMQPValue::Boolean(b) => b.to_string(),
            AMQPValue::ShortShortInt(n) => n.to_string(),
            AMQPValue::ShortShortUInt(n) => n.to_string(),
            AMQPValue::ShortInt(n) => n.to_string(),
            AMQPValue::ShortUInt(n) => n.to_string(),
            AMQPValue::LongInt(n) => n.to_string(),
            AMQPValue::LongUInt(n) => n.to_string(),
            AMQPValue::LongLongInt(n) => n.to_string(),
            AMQPValue::Timestamp(n) => n.to_string(),
            AMQPValue::Float(n) => n.to_string(),
            AMQPValue::Double(n) => n.to_string(),
            // Tables and arrays (e.g. x-death) have no string form.
            _ => continue,
        };
        if k.as_str() == HEADER_DELIVERY_COUNT {
            count = text
                .parse::<i64>()
                .map_or(0, |n| n.clamp(0, i64::from(u32::MAX)) as u32);
        } else {
            headers.insert(k.as_str().to_owned(), text);
        }
    }
    (headers, count)
}

impl AmqpBroker {
    /// Connects to RabbitMQ (`amqp://user:pass@host:port/vhost`, or `amqps://`), retrying with
    /// back-off for up to [`AmqpConfig::connect_timeout`].
    ///
    /// # Errors
    /// [`BrokerError::InvalidUrl`]; [`BrokerError::ConnectTimeout`] when the broker cannot be
    /// reached in time; [`BrokerError::Connect`] (not retryable) for refused credentials or a
    /// missing vhost. Errors name the URL with its password redacted.
    pub async fn connect(url: &str, config: AmqpConfig) -> Result<Self, BrokerError> {
        let redacted = redact_url(url);
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(BrokerError::InvalidUrl {
                url: redacted,
                reason: "expected amqp:// or amqps://".into(),
            });
        }
        let mut uri: AMQPUri = url
            .parse()
            .map_err(|reason: String| BrokerError::InvalidUrl {
                url: redacted.clone(),
                reason: reason.replace(url, &redacted),
            })?;
        if uri.query.heartbeat.is_none() {
            let secs = config.heartbeat.as_secs().clamp(1, u64::from(u16::MAX));
            uri.query.heartbeat = u16::try_from(secs).ok();
        }
        let inner = Arc::new(Inner {
            uri,
            redacted,
            unconfirmed: Semaphore::new(config.max_unconfirmed.max(1)),
            config,
            session: tokio::sync::Mutex::new(None),
        });
        let first = inner.open_session(inner.config.connect_timeout).await?;
        *inner.session.lock().await = Some(first);
        tracing::info!(url = %inner.redacted, "connected to broker");
        Ok(Self { inner })
    }

    /// The broker URL with its password redacted.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.inner.redacted
    }

    /// Closes the connection gracefully. Subscriptions end; later operations reconnect.
    ///
    /// # Errors
    /// Connection errors while closing.
    pub async fn close(&self) -> Result<(), BrokerError> {
        let session = self.inner.session.lock().await.take();
        if let Some(s) = session {
            if s.connection.status().connected() {
                s.connection
                    .close(200, "OK".into())
                    .await
                    .map_err(|e| BrokerError::Operation {
                        op: "connection.close",
                        target: self.inner.redacted.clone(),
                        retryable: false,
                        source: Box::new(e),
                    })?;
            }
        }
        Ok(())
    }
}

impl Inner {
    async fn connect_once(&self) -> Result<Session, lapin::Error> {
        let props = ConnectionProperties::default()
            .with_connection_name(self.config.connection_name.as_str().into());
        let connection = Connection::connect_uri(self.uri.clone(), props).await?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Session {
            connection: Arc::new(connection),
            publisher,
            exchanges: Arc::default(),
        })
    }

    /// Connects, retrying retryable failures with back-off until `limit` has passed.
    async fn open_session(&self, limit: Duration) -> Result<Session, BrokerError> {
        let deadline = Instant::now() + limit;
        let mut backoff = Backoff::new(self.config.backoff);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let last_error = match tokio::time::timeout(remaining, self.connect_once()).await {
                Ok(Ok(session)) => return Ok(session),
                Ok(Err(e)) if !is_connection_loss(&e) => {
                    return Err(BrokerError::Connect {
                        url: self.redacted.clone(),
                        retryable: false,
                        source: Box::new(e),
                    });
                }
                Ok(Err(e)) => {
                    tracing::debug!(url = %self.redacted, error = %e, "broker connection attempt failed");
                    e.to_string()
                }
                Err(_elapsed) => String::from("timed out"),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(BrokerError::ConnectTimeout {
                    url: self.redacted.clone(),
                    timeout: limit,
                    last_error,
                });
            }
            tokio::time::sleep(backoff.next_delay().min(remaining)).await;
        }
    }

    /// The live session, reconnecting (or reopening the publisher channel) as needed.
    async fn session(&self) -> Result<Session, BrokerError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_mut() {
            if s.connection.status().connected() {
                if s.publisher.status().connected() {
                    return Ok(s.clone());
                }
                // Only the publisher channel died (a channel-level error): replace it.
                let reopened = async {
                    let ch = s.connection.create_channel().await?;
                    ch.confirm_select(ConfirmSelectOptions::default()).await?;
                    Ok::<_, lapin::Error>(ch)
                };
                match tokio::time::timeout(self.config.operation_timeout, reopened).await {
                    Ok(Ok(ch)) => {
                        s.publisher = ch;
                        return Ok(s.clone());
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot reopen publisher channel"),
                    Err(_) => tracing::warn!("reopening publisher channel timed out"),
                }
            }
        }
        if guard.take().is_some() {
            tracing::warn!(url = %self.redacted, "broker connection lost; reconnecting");
        }
        let fresh = self.open_session(self.config.reconnect_timeout).await?;
        tracing::info!(url = %self.redacted, "reconnected to broker");
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    /// Runs `f` on the live session; on connection loss reconnects and runs it again, for up to
    /// [`AmqpConfig::reconnect_timeout`].
    async fn with_retry<T, F, Fut>(
        &self,
        op: &'static str,
        target: &str,
        mut f: F,
    ) -> Result<T, BrokerError>
    where
        F: FnMut(Session) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let deadline = Instant::now() + self.config.reconnect_timeout;
        let mut backoff = Backoff::new(self.config.backoff);
        loop {
            let session = self.session().await?;
            match tokio::time::timeout(self.config.operation_timeout, f(session)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(Failure::Final(e))) => return Err(e),
                Ok(Err(Failure::Transient(e))) => {
                    tracing::warn!(op, target, error = %e, "broker operation failed; retrying");
                    if Instant::now() >= deadline {
                        return Err(BrokerError::Operation {
                            op,
                            target: target.into(),
                            retryable: true,
                            source: Box::new(e),
                        });
                    }
                }
                Err(_) => {
                    return Err(BrokerError::Timeout {
                        op,
                        target: target.into(),
                        timeout: self.config.operation_timeout,
                    })
                }
            }
            backoff.wait().await;
        }
    }

    /// Publishes and waits for the confirm, retrying on a fresh connection if it drops.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        persistent: bool,
        msg: &Message,
    ) -> Result<(), BrokerError> {
        let target = if exchange.is_empty() {
            routing_key
        } else {
            exchange
        };
        let _permit = self
            .unconfirmed
            .acquire()
            .await
            .map_err(|_| BrokerError::Closed)?;
        let exchange_s = short(exchange)?;
        let routing_key_s = short(routing_key)?;
        let properties = BasicProperties::default()
            .with_delivery_mode(if persistent { 2 } else { 1 })
            .with_headers(to_field_table(&msg.headers));
        self.with_retry("publish", target, |session| {
            let (exchange_s, routing_key_s, properties) = (
                exchange_s.clone(),
                routing_key_s.clone(),
                properties.clone(),
            );
            async move {
                let confirm = session
                    .publisher
                    .basic_publish(
                        exchange_s,
                        routing_key_s,
                        BasicPublishOptions {
                            mandatory,
                            ..BasicPublishOptions::default()
                        },
                        &msg.body,
                        properties,
                    )
                    .await
                    .map_err(|e| classify(e, "publish", target))?
                    .await
                    .map_err(|e| classify(e, "publish", target))?;
                match confirm {
                    Confirmation::Ack(None) => Ok(()),
                    Confirmation::Ack(Some(_returned)) => {
                        Err(Failure::Final(BrokerError::Unroutable {
                            queue: target.into(),
                        }))
                    }
                    Confirmation::Nack(_) => Err(Failure::Final(BrokerError::PublishRejected {
                        target: target.into(),
                    })),
                    Confirmation::NotRequested => Err(Failure::Final(BrokerError::Operation {
                        op: "publish",
                        target: target.into(),
                        retryable: true,
                        source: "publisher channel is not in confirm mode".into(),
                    })),
                }
            }
        })
        .await
    }

    async fn declare_exchange(&self, session: &Session, exchange: &str) -> Result<(), Failure> {
        let known = session
            .exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(exchange);
        if known {
            return Ok(());
        }
        let op = "exchange.declare";
        let ch = session
            .connection
            .create_channel()
            .await
            .map_err(|e| classify(e, op, exchange))?;
        ch.exchange_declare(
            exchange.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| classify(e, op, exchange))?;
        session
            .exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(exchange.into());
        Ok(())
    }

    /// Opens a channel and a consumer for a subscription.
    async fn subscribe(self: &Arc<Self>, kind: &Kind) -> Result<Active, BrokerError> {
        let target = match kind {
            Kind::Queue { queue, .. } => queue.clone(),
            Kind::Events { exchange } => exchange.clone(),
        };
        let target: &str = &target;
        self.with_retry("basic.consume", target, |session| async move {
            let op = "basic.consume";
            let ch = session
                .connection
                .create_channel()
                .await
                .map_err(|e| classify(e, op, target))?;
            let (queue, no_ack) = match kind {
                Kind::Queue { queue, prefetch } => {
                    ch.basic_qos(*prefetch, BasicQosOptions::default())
                        .await
                        .map_err(|e| classify(e, "basic.qos", queue))?;
                    (queue.clone(), false)
                }
                Kind::Events { exchange } => {
                    self.declare_exchange(&session, exchange).await?;
                    let mut args = FieldTable::default();
                    args.insert(
                        "x-max-length".into(),
                        AMQPValue::LongLongInt(i64::from(self.config.event_buffer.max(1))),
                    );
                    let q = ch
                        .queue_declare(
                            "".into(),
                            QueueDeclareOptions {
                                exclusive: true,
                                auto_delete: true,
                                ..QueueDeclareOptions::default()
                            },
                            args,
                        )
                        .await
                        .map_err(|e| classify(e, "queue.declare", exchange))?;
                    ch.queue_bind(
                        q.name().clone(),
                        exchange.as_ref().into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| classify(e, "queue.bind", exchange))?;
                    (Arc::from(q.name().as_str()), true)
                }
            };
            let consumer = ch
                .basic_consume(
                    short(&queue).map_err(Failure::Final)?,
                    "".into(),
                    BasicConsumeOptions {
                        no_ack,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| match soft_error(&e) {
                    Some(AMQPSoftError::NOTFOUND) => Failure::Final(BrokerError::QueueNotFound {
                        queue: queue.to_string(),
                    }),
                    _ => classify(e, op, &queue),
                })?;
            Ok(Active {
                channel: ch,
                consumer,
                queue,
            })
        })
        .await
    }

    /// Runs `f` on a fresh, short-lived channel (channel-level errors close the channel, so
    /// declarations and queries do not share the publisher's).
    async fn on_temp_channel<T, F, Fut>(
        &self,
        op: &'static str,
        target: &str,
        f: F,
    ) -> Result<T, BrokerError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.with_retry(op, target, |session| {
            let f = &f;
            async move {
                let ch = session
                    .connection
                    .create_channel()
                    .await
                    .map_err(|e| classify(e, op, target))?;
                let result = f(ch.clone()).await;
                if ch.status().connected() {
                    let _ = ch.close(200, "OK".into()).await;
                }
                result
            }
        })
        .await
    }
}

fn queue_arguments(queue: &str, spec: &QueueSpec) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(spec.delivery_limit)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dead_letter_queue(queue).into()),
    );
    let clamp = |n: u64| AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX));
    if let Some(bytes) = spec.max_length_bytes {
        args.insert("x-max-length-bytes".into(), clamp(bytes));
    }
    if let Some(n) = spec.max_length {
        args.insert("x-max-length".into(), clamp(n));
    }
    if spec.max_length_bytes.is_some() || spec.max_length.is_some() {
        let overflow = match spec.overflow {
            Overflow::RejectPublish => "reject-publish",
            Overflow::DropHead => "drop-head",
        };
        args.insert("x-overflow".into(), AMQPValue::LongString(overflow.into()));
    }
    args
}

fn quorum_only() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

fn declare_error(e: lapin::Error, queue: &str) -> Failure {
    match soft_error(&e) {
        Some(AMQPSoftError::PRECONDITIONFAILED) => {
            let detail = match e.kind() {
                ErrorKind::ProtocolError(amqp) => amqp.get_message().to_string(),
                _ => e.to_string(),
            };
            Failure::Final(BrokerError::QueueMismatch {
                queue: queue.into(),
                detail,
            })
        }
        _ => classify(e, "queue.declare", queue),
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn declare_queue(&self, queue: &str, spec: &QueueSpec) -> Result<(), BrokerError> {
        check_name(queue)?;
        let dlq = dead_letter_queue(queue);
        let durable = QueueDeclareOptions::durable();
        self.inner
            .on_temp_channel("queue.declare", queue, |ch| {
                let dlq = dlq.clone();
                async move {
                    ch.queue_declare(dlq.as_str().into(), durable, quorum_only())
                        .await
                        .map_err(|e| declare_error(e, &dlq))?;
                    Ok(())
                }
            })
            .await?;
        self.inner
            .on_temp_channel("queue.declare", queue, |ch| async move {
                ch.queue_declare(queue.into(), durable, queue_arguments(queue, spec))
                    .await
                    .map_err(|e| declare_error(e, queue))?;
                Ok(())
            })
            .await
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), BrokerError> {
        check_name(queue)?;
        for name in [queue.to_owned(), dead_letter_queue(queue)] {
            let name = name.as_str();
            self.inner
                .on_temp_channel("queue.delete", name, |ch| async move {
                    match ch
                        .queue_delete(name.into(), QueueDeleteOptions::default())
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(e) if soft_error(&e) == Some(&AMQPSoftError::NOTFOUND) => Ok(()),
                        Err(e) => Err(classify(e, "queue.delete", name)),
                    }
                })
                .await?;
        }
        Ok(())
    }

    async fn publish(&self, queue: &str, msg: Message) -> Result<(), BrokerError> {
        check_name(queue)?;
        check_size(queue, &msg, self.inner.config.max_message_bytes)?;
        check_headers(queue, &msg)?;
        self.inner
            .publish_confirmed("", queue, true, true, &msg)
            .await
    }

    async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        check_name(queue)?;
        let kind = Kind::Queue {
            queue: queue.into(),
            prefetch,
        };
        let active = self.inner.subscribe(&kind).await?;
        Ok(Box::new(AmqpSubscription::new(
            self.inner.clone(),
            kind,
            active,
        )))
    }

    async fn publish_event(&self, exchange: &str, msg: Message) -> Result<(), BrokerError> {
        check_name(exchange)?;
        check_size(exchange, &msg, self.inner.config.max_message_bytes)?;
        check_headers(exchange, &msg)?;
        let inner = &self.inner;
        inner
            .with_retry("exchange.declare", exchange, |session| async move {
                inner.declare_exchange(&session, exchange).await
            })
            .await?;
        inner
            .publish_confirmed(exchange, "", false, false, &msg)
            .await
    }

    async fn subscribe_events(&self, exchange: &str) -> Result<Box<dyn Subscription>, BrokerError> {
        check_name(exchange)?;
        let kind = Kind::Events {
            exchange: exchange.into(),
        };
        let active = self.inner.subscribe(&kind).await?;
        Ok(Box::new(AmqpSubscription::new(
            self.inner.clone(),
            kind,
            active,
        )))
    }

    async fn delete_exchange(&self, exchange: &str) -> Result<(), BrokerError> {
        check_name(exchange)?;
        let inner = &self.inner;
        inner
            .with_retry("exchange.delete", exchange, |session| async move {
                session
                    .exchanges
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(exchange);
                let ch = session
                    .connection
                    .create_channel()
                    .await
                    .map_err(|e| classify(e, "exchange.delete", exchange))?;
                match ch
                    .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) if soft_error(&e) == Some(&AMQPSoftError::NOTFOUND) => Ok(()),
                    Err(e) => Err(classify(e, "exchange.delete", exchange)),
                }
            })
            .await
    }

    async fn queue_depth(&self, queue: &str) -> Result<u64, BrokerError> {
        check_name(queue)?;
        self.inner
            .on_temp_channel("queue.declare", queue, |ch| async move {
                let q = ch
                    .queue_declare(
                        queue.into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| match soft_error(&e) {
                        Some(AMQPSoftError::NOTFOUND) => {
                            Failure::Final(BrokerError::QueueNotFound {
                                queue: queue.into(),
                            })
                        }
                        _ => classify(e, "queue.declare", queue),
                    })?;
                Ok(u64::from(q.message_count()))
            })
            .await
    }

    fn max_message_bytes(&self) -> usize {
        self.inner.config.max_message_bytes
    }

    async fn close(&self) -> Result<(), BrokerError> {
        AmqpBroker::close(self).await
    }
}

/// What a subscription consumes.
enum Kind {
    Queue { queue: Arc<str>, prefetch: u16 },
    Events { exchange: Arc<str> },
}

/// A live consumer.
struct Active {
    channel: Channel,
    consumer: Consumer,
    /// The queue consumed (for events: the private server-named queue).
    queue: Arc<str>,
}

struct AmqpSubscription {
    inner: Arc<Inner>,
    kind: Kind,
    active: Option<Active>,
    backoff: Backoff,
}

impl AmqpSubscription {
    fn new(inner: Arc<Inner>, kind: Kind, active: Active) -> Self {
        let backoff = Backoff::new(inner.config.backoff);
        Self {
            inner,
            kind,
            active: Some(active),
            backoff,
        }
    }

    fn label(&self) -> Arc<str> {
        match &self.kind {
            Kind::Queue { queue, .. } => queue.clone(),
            Kind::Events { exchange } => exchange.clone(),
        }
    }
}

#[async_trait]
impl Subscription for AmqpSubscription {
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        loop {
            let active = match &mut self.active {
                Some(active) => active,
                None => match self.inner.subscribe(&self.kind).await {
                    Ok(active) => {
                        tracing::info!(target = %self.label(), "re-subscribed");
                        self.active.insert(active)
                    }
                    Err(BrokerError::QueueNotFound { .. }) => return None,
                    Err(e) => {
                        self.backoff.wait().await;
                        return Some(Err(e));
                    }
                },
            };
            match active.consumer.next().await {
                Some(Ok(d)) => {
                    self.backoff.reset();
                    let events = matches!(self.kind, Kind::Events { .. });
                    let queue = if events {
                        self.label()
                    } else {
                        active.queue.clone()
                    };
                    if d.data.len() > self.inner.config.max_message_bytes {
                        tracing::warn!(
                            queue = %queue,
                            size = d.data.len(),
                            limit = self.inner.config.max_message_bytes,
                            "oversized message; dead-lettering it"
                        );
                        if !events {
                            if let Err(e) = settle(&d.acker, Settle::DeadLetter, &queue).await {
                                tracing::warn!(queue = %queue, error = %e, "cannot dead-letter oversized message");
                            }
                        }
                        continue;
                    }
                    let (headers, delivery_count) =
                        from_field_table(d.properties.headers().as_ref());
                    return Some(Ok(Delivery {
                        body: Bytes::from(d.data),
                        headers,
                        redelivered: d.redelivered,
                        delivery_count,
                        queue,
                        settler: if events {
                            Settler::None
                        } else {
                            Settler::Amqp(d.acker)
                        },
                    }));
                }
                Some(Err(e)) => {
                    tracing::warn!(target = %self.label(), error = %e, "consumer failed; re-subscribing");
                    self.active = None;
                    self.backoff.wait().await;
                }
                None => {
                    if active.channel.status().connected() {
                        // Cancelled by the broker with the channel alive: the queue is gone.
                        tracing::info!(target = %self.label(), "consumer cancelled by broker");
                        self.active = None;
                        return None;
                    }
                    self.active = None;
                    self.backoff.wait().await;
                }
            }
        }
    }
}

/// Settles a delivery received over AMQP.
pub(crate) async fn settle(acker: &Acker, how: Settle, queue: &str) -> Result<(), BrokerError> {
    let result = match how {
        Settle::Ack => acker.ack(BasicAckOptions::default()).await,
        Settle::Retry => {
            acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await
        }
        Settle::DeadLetter => acker.reject(BasicRejectOptions { requeue: false }).await,
    };
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(BrokerError::Settle {
            op: how.op(),
            queue: queue.into(),
            reason: "the channel it arrived on has closed; the broker redelivers the message"
                .into(),
        }),
        Err(e) => Err(BrokerError::Settle {
            op: how.op(),
            queue: queue.into(),
            reason: e.to_string(),
        }),
    }
}
