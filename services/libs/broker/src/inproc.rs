//! The in-process broker: RabbitMQ's work-queue semantics in memory, for embedded mode.

use crate::{
    check_headers, check_name, check_size, dead_letter_queue, Broker, BrokerError, Delivery,
    Message, Overflow, QueueSpec, Settle, Settler, Subscription, DEFAULT_MAX_MESSAGE_BYTES,
    HEADER_DEATH_QUEUE, HEADER_DEATH_REASON,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{mpsc, Notify};

/// Settings of an [`InProcessBroker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProcessConfig {
    /// Largest accepted message body in bytes (default [`crate::DEFAULT_MAX_MESSAGE_BYTES`]).
    pub max_message_bytes: usize,
    /// Events buffered per event subscriber before new events are dropped for it (default 4096).
    pub event_buffer: usize,
}

impl Default for InProcessConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            event_buffer: 4096,
        }
    }
}

/// An in-memory broker with the semantics of [`crate::AmqpBroker`] on RabbitMQ quorum queues:
/// prefetch, manual ack, retry counting toward a delivery limit, dead-letter queues,
/// redelivery of unsettled messages when a subscription is dropped, fan-out events.
/// Messages live as long as the broker (no persistence). Clones share the same queues.
#[derive(Debug, Clone, Default)]
pub struct InProcessBroker {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    config: InProcessConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    queues: HashMap<String, Queue>,
    exchanges: HashMap<String, Vec<mpsc::Sender<Message>>>,
    /// Unsettled deliveries per subscription id.
    in_flight: HashMap<u64, usize>,
    next_tag: u64,
    next_id: u64,
}

#[derive(Debug)]
struct Queue {
    /// `None` for dead-letter queues (no limits, no further dead-lettering).
    spec: Option<QueueSpec>,
    /// Identifies this incarnation of the queue (a deleted and re-declared queue is another).
    id: u64,
    /// Returned messages are served before new ones, like rabbit_fifo's returns queue.
    returns: VecDeque<Stored>,
    ready: VecDeque<Stored>,
    ready_bytes: u64,
    /// Delivery tag → (subscription id, message).
    unacked: BTreeMap<u64, (u64, Stored)>,
    notify: Arc<Notify>,
    /// Live subscriptions.
    consumers: u64,
}

#[derive(Debug)]
struct Stored {
    msg: Message,
    delivery_count: u32,
    redelivered: bool,
}

impl Queue {
    fn new(spec: Option<QueueSpec>, id: u64) -> Self {
        Self {
            spec,
            id,
            returns: VecDeque::new(),
            ready: VecDeque::new(),
            ready_bytes: 0,
            unacked: BTreeMap::new(),
            notify: Arc::new(Notify::new()),
            consumers: 0,
        }
    }

    fn depth(&self) -> usize {
        self.returns.len() + self.ready.len()
    }

    fn pop(&mut self) -> Option<Stored> {
        let stored = self
            .returns
            .pop_front()
            .or_else(|| self.ready.pop_front())?;
        self.ready_bytes -= stored.msg.body.len() as u64;
        Some(stored)
    }

    fn push(&mut self, stored: Stored) {
        self.ready_bytes += stored.msg.body.len() as u64;
        self.ready.push_back(stored);
        self.notify.notify_waiters();
    }

    fn push_return(&mut self, stored: Stored) {
        self.ready_bytes += stored.msg.body.len() as u64;
        self.returns.push_back(stored);
        self.notify.notify_waiters();
    }

    fn is_full(&self) -> bool {
        let Some(spec) = &self.spec else { return false };
        spec.max_length.is_some_and(|n| self.depth() as u64 >= n)
            || spec.max_length_bytes.is_some_and(|b| self.ready_bytes >= b)
    }
}

impl State {
    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Moves a message to the dead-letter queue of `queue`, if that exists.
    fn dead_letter(&mut self, queue: &str, mut stored: Stored, reason: &str) {
        let headers = &mut stored.msg.headers;
        if !headers.contains_key(HEADER_DEATH_REASON) {
            headers.insert(HEADER_DEATH_REASON.into(), reason.into());
            headers.insert(HEADER_DEATH_QUEUE.into(), queue.into());
        }
        if let Some(dlq) = self.queues.get_mut(&dead_letter_queue(queue)) {
            dlq.push(Stored {
                msg: stored.msg,
                delivery_count: 0,
                redelivered: false,
            });
        } else {
            tracing::warn!(queue, reason, "dead-letter queue missing; message dropped");
        }
    }

    /// Returns an unsettled message to its queue, counting a failed delivery; past the delivery
    /// limit it is dead-lettered instead.
    fn return_message(&mut self, queue: &str, mut stored: Stored) {
        stored.delivery_count = stored.delivery_count.saturating_add(1);
        stored.redelivered = true;
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        match &q.spec {
            Some(spec) if stored.delivery_count > spec.delivery_limit => {
                self.dead_letter(queue, stored, "delivery_limit");
            }
            _ => q.push_return(stored),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the broker, so carry on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl InProcessBroker {
    /// A new, empty broker with default settings.
    #[must_use]
    pub fn new() -> Self {
        Self::with_config(InProcessConfig::default())
    }

    /// A new, empty broker.
    #[must_use]
    pub fn with_config(config: InProcessConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                state: Mutex::default(),
            }),
        }
    }
}

#[async_trait]
impl Broker for InProcessBroker {
    async fn declare_queue(&self, queue: &str, spec: &QueueSpec) -> Result<(), BrokerError> {
        check_name(queue)?;
        let mut state = self.shared.lock();
        if let Some(existing) = state.queues.get(queue) {
            return match &existing.spec {
                Some(s) if s == spec => Ok(()),
                Some(s) => Err(BrokerError::QueueMismatch {
                    queue: queue.into(),
                    detail: format!("declared with {s:?}, requested {spec:?}"),
                }),
                None => Err(BrokerError::QueueMismatch {
                    queue: queue.into(),
                    detail: "it is a dead-letter queue".into(),
                }),
            };
        }
        let dlq = dead_letter_queue(queue);
        if !state.queues.contains_key(&dlq) {
            let id = state.fresh_id();
            state.queues.insert(dlq, Queue::new(None, id));
        }
        let id = state.fresh_id();
        state
            .queues
            .insert(queue.into(), Queue::new(Some(spec.clone()), id));
        Ok(())
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), BrokerError> {
        check_name(queue)?;
        let mut state = self.shared.lock();
        for name in [queue.to_owned(), dead_letter_queue(queue)] {
            if let Some(q) = state.queues.remove(&name) {
                for (sub, _) in q.unacked.values() {
                    if let Some(n) = state.in_flight.get_mut(sub) {
                        *n = n.saturating_sub(1);
                    }
                }
                q.notify.notify_waiters();
            }
        }
        Ok(())
    }

    async fn publish(&self, queue: &str, msg: Message) -> Result<(), BrokerError> {
        check_name(queue)?;
        check_size(queue, &msg, self.shared.config.max_message_bytes)?;
        check_headers(queue, &msg)?;
        let mut state = self.shared.lock();
        let Some(q) = state.queues.get_mut(queue) else {
            return Err(BrokerError::Unroutable {
                queue: queue.into(),
            });
        };
        let stored = Stored {
            msg,
            delivery_count: 0,
            redelivered: false,
        };
        if q.is_full() && q.spec.as_ref().map(|s| s.overflow) != Some(Overflow::DropHead) {
            return Err(BrokerError::PublishRejected {
                target: queue.into(),
            });
        }
        // Drop-head overflow: dead-letter the oldest messages until there is room.
        while let Some(q) = state.queues.get_mut(queue) {
            let head = if q.is_full() { q.pop() } else { None };
            match head {
                Some(head) => state.dead_letter(queue, head, "maxlen"),
                None => {
                    q.push(stored);
                    break;
                }
            }
        }
        Ok(())
    }

    async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        check_name(queue)?;
        let mut state = self.shared.lock();
        let Some(q) = state.queues.get_mut(queue) else {
            return Err(BrokerError::QueueNotFound {
                queue: queue.into(),
            });
        };
        q.consumers += 1;
        let queue_id = q.id;
        let id = state.fresh_id();
        state.in_flight.insert(id, 0);
        Ok(Box::new(QueueSubscription {
            shared: self.shared.clone(),
            queue: queue.into(),
            queue_id,
            id,
            prefetch: usize::from(prefetch),
        }))
    }

    async fn publish_event(&self, exchange: &str, msg: Message) -> Result<(), BrokerError> {
        check_name(exchange)?;
        check_size(exchange, &msg, self.shared.config.max_message_bytes)?;
        check_headers(exchange, &msg)?;
        let mut state = self.shared.lock();
        let subscribers = state.exchanges.entry(exchange.into()).or_default();
        subscribers.retain(|tx| !tx.is_closed());
        for tx in subscribers.iter() {
            if tx.try_send(msg.clone()).is_err() {
                tracing::warn!(
                    exchange,
                    "event subscriber is not keeping up; event dropped"
                );
            }
        }
        Ok(())
    }

    async fn subscribe_events(&self, exchange: &str) -> Result<Box<dyn Subscription>, BrokerError> {
        check_name(exchange)?;
        let (tx, rx) = mpsc::channel(self.shared.config.event_buffer.max(1));
        self.shared
            .lock()
            .exchanges
            .entry(exchange.into())
            .or_default()
            .push(tx);
        Ok(Box::new(EventSubscription {
            rx,
            exchange: exchange.into(),
        }))
    }

    async fn delete_exchange(&self, exchange: &str) -> Result<(), BrokerError> {
        check_name(exchange)?;
        self.shared.lock().exchanges.remove(exchange);
        Ok(())
    }

    async fn queue_depth(&self, queue: &str) -> Result<u64, BrokerError> {
        check_name(queue)?;
        let state = self.shared.lock();
        match state.queues.get(queue) {
            Some(q) => Ok(q.depth() as u64),
            None => Err(BrokerError::QueueNotFound {
                queue: queue.into(),
            }),
        }
    }

    async fn queue_consumers(&self, queue: &str) -> Result<u64, BrokerError> {
        check_name(queue)?;
        let state = self.shared.lock();
        match state.queues.get(queue) {
            Some(q) => Ok(q.consumers),
            None => Err(BrokerError::QueueNotFound {
                queue: queue.into(),
            }),
        }
    }

    fn max_message_bytes(&self) -> usize {
        self.shared.config.max_message_bytes
    }
}

/// Settles one in-process delivery.
pub(crate) struct InProcSettler {
    shared: Arc<Shared>,
    queue_id: u64,
    tag: u64,
}

impl InProcSettler {
    pub(crate) fn settle(self, how: Settle, queue: &str) -> Result<(), BrokerError> {
        let mut state = self.shared.lock();
        let entry = state
            .queues
            .get_mut(queue)
            .filter(|q| q.id == self.queue_id)
            .and_then(|q| q.unacked.remove(&self.tag));
        let Some((sub, stored)) = entry else {
            return Err(BrokerError::Settle {
                op: how.op(),
                queue: queue.into(),
                reason: "the delivery is no longer outstanding (its subscription ended or the \
                         queue was deleted); the message is redelivered"
                    .into(),
            });
        };
        if let Some(n) = state.in_flight.get_mut(&sub) {
            *n = n.saturating_sub(1);
        }
        match how {
            Settle::Ack => {}
            Settle::Retry => state.return_message(queue, stored),
            Settle::DeadLetter => state.dead_letter(queue, stored, "rejected"),
        }
        if let Some(q) = state.queues.get(queue) {
            // A prefetch slot is free: wake the consumers.
            q.notify.notify_waiters();
        }
        Ok(())
    }
}

struct QueueSubscription {
    shared: Arc<Shared>,
    queue: Arc<str>,
    queue_id: u64,
    id: u64,
    prefetch: usize,
}

impl QueueSubscription {
    /// Takes the next message if the prefetch window allows; `Err(())` if the queue is gone.
    fn try_take(&self) -> Result<Option<Delivery>, ()> {
        let mut state = self.shared.lock();
        let in_flight = state.in_flight.get(&self.id).copied().unwrap_or(0);
        state.next_tag += 1;
        let tag = state.next_tag;
        let q = match state.queues.get_mut(&*self.queue) {
            Some(q) if q.id == self.queue_id => q,
            _ => return Err(()),
        };
        if self.prefetch != 0 && in_flight >= self.prefetch {
            return Ok(None);
        }
        let Some(stored) = q.pop() else {
            return Ok(None);
        };
        let delivery = Delivery {
            body: stored.msg.body.clone(),
            headers: stored.msg.headers.clone(),
            redelivered: stored.redelivered,
            delivery_count: stored.delivery_count,
            queue: self.queue.clone(),
            settler: Settler::InProc(InProcSettler {
                shared: self.shared.clone(),
                queue_id: self.queue_id,
                tag,
            }),
        };
        q.unacked.insert(tag, (self.id, stored));
        state.in_flight.insert(self.id, in_flight + 1);
        Ok(Some(delivery))
    }

    fn notify(&self) -> Option<Arc<Notify>> {
        let state = self.shared.lock();
        state
            .queues
            .get(&*self.queue)
            .filter(|q| q.id == self.queue_id)
            .map(|q| q.notify.clone())
    }
}

#[async_trait]
impl Subscription for QueueSubscription {
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        loop {
            let notify = self.notify()?;
            let notified = notify.notified();
            tokio::pin!(notified);
            // Register before looking, so a publish between the look and the wait still wakes us.
            notified.as_mut().enable();
            match self.try_take() {
                Ok(Some(delivery)) => return Some(Ok(delivery)),
                Ok(None) => notified.await,
                Err(()) => return None,
            }
        }
    }
}

impl Drop for QueueSubscription {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.in_flight.remove(&self.id);
        let Some(q) = state
            .queues
            .get_mut(&*self.queue)
            .filter(|q| q.id == self.queue_id)
        else {
            return;
        };
        q.consumers = q.consumers.saturating_sub(1);
        let tags: Vec<u64> = q
            .unacked
            .iter()
            .filter(|(_, (sub, _))| *sub == self.id)
            .map(|(tag, _)| *tag)
            .collect();
        let mut returned = Vec::with_capacity(tags.len());
        for tag in tags {
            if let Some((_, stored)) = q.unacked.remove(&tag) {
                returned.push(stored);
            }
        }
        for stored in returned {
            state.return_message(&self.queue, stored);
        }
    }
}

struct EventSubscription {
    rx: mpsc::Receiver<Message>,
    exchange: Arc<str>,
}

#[async_trait]
impl Subscription for EventSubscription {
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        let msg = self.rx.recv().await?;
        Some(Ok(Delivery {
            body: msg.body,
            headers: msg.headers,
            redelivered: false,
            delivery_count: 0,
            queue: self.exchange.clone(),
            settler: Settler::None,
        }))
    }
}
