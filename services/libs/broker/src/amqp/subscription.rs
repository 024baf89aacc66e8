//! Consumers: a subscription that re-subscribes after a lost channel, and settling deliveries.

use super::*;

/// What a subscription consumes.
pub(super) enum Kind {
    Queue { queue: Arc<str>, prefetch: u16 },
    Events { exchange: Arc<str> },
}

/// A live consumer.
pub(super) struct Active {
    pub(super) channel: Channel,
    pub(super) consumer: Consumer,
    /// The queue consumed (for events: the private server-named queue).
    pub(super) queue: Arc<str>,
}

pub(super) struct AmqpSubscription {
    inner: Arc<Inner>,
    kind: Kind,
    active: Option<Active>,
    backoff: Backoff,
}

impl AmqpSubscription {
    pub(super) fn new(inner: Arc<Inner>, kind: Kind, active: Active) -> Self {
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
                    // An outage of any length: keep re-subscribing (each attempt reconnects
                    // for up to the reconnect timeout); only lasting errors reach the consumer.
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(target = %self.label(), error = %e, "broker unreachable; still trying");
                        self.backoff.wait().await;
                        continue;
                    }
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
