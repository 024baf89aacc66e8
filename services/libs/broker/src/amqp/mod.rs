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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

mod broker_impl;
mod convert;
mod subscription;
mod topology;

use convert::*;
pub(crate) use subscription::settle;
use subscription::{Active, AmqpSubscription, Kind};
use topology::*;

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
    /// Largest message body accepted on publish and consume, in bytes (default [`crate::DEFAULT_MAX_MESSAGE_BYTES`]).
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
    /// Back-off between reconnect attempts (default 100 ms → 2 s: a refused connection costs
    /// the broker little, and a service is back within about 2 s of the broker's return).
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
            backoff: BackoffConfig {
                max: Duration::from_secs(2),
                ..BackoffConfig::default()
            },
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
    /// Whether the last look at the connection found it alive (see `Broker::is_connected`).
    connected: AtomicBool,
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
            connected: AtomicBool::new(false),
        });
        let first = inner.open_session(inner.config.connect_timeout).await?;
        *inner.session.lock().await = Some(first);
        inner.connected.store(true, Ordering::Relaxed);
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
        self.connected.store(false, Ordering::Relaxed);
        if guard.take().is_some() {
            tracing::warn!(url = %self.redacted, "broker connection lost; reconnecting");
        }
        let fresh = self.open_session(self.config.reconnect_timeout).await?;
        tracing::info!(url = %self.redacted, "reconnected to broker");
        *guard = Some(fresh.clone());
        self.connected.store(true, Ordering::Relaxed);
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
