//! The [`Broker`] trait for [`AmqpBroker`]: every operation retried on a fresh connection when the
//! old one was lost.

use super::*;

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
        Ok(self.declare_passive(queue).await?.0)
    }

    async fn queue_consumers(&self, queue: &str) -> Result<u64, BrokerError> {
        Ok(self.declare_passive(queue).await?.1)
    }
    fn max_message_bytes(&self) -> usize {
        self.inner.config.max_message_bytes
    }

    fn is_connected(&self) -> bool {
        self.inner
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn close(&self) -> Result<(), BrokerError> {
        AmqpBroker::close(self).await
    }
}

impl AmqpBroker {
    /// `(ready messages, consumers)` of `queue`, from a passive declare.
    async fn declare_passive(&self, queue: &str) -> Result<(u64, u64), BrokerError> {
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
                Ok((u64::from(q.message_count()), u64::from(q.consumer_count())))
            })
            .await
    }
}
