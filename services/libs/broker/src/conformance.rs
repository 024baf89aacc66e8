//! The conformance suite every [`Broker`] implementation must pass (enabled by the
//! `conformance` feature). Each check takes a broker and a name prefix, creates uniquely named
//! queues and exchanges, deletes them at the end, and panics on failure.
//!
//! [`conformance_tests!`](crate::conformance_tests) expands to one `#[tokio::test]` per check:
//!
//! ```ignore
//! async fn make() -> std::sync::Arc<dyn broker::Broker> {
//!     std::sync::Arc::new(broker::InProcessBroker::new())
//! }
//! broker::conformance_tests!("my-prefix", make());
//! ```

use crate::{
    dead_letter_queue, Broker, BrokerError, Delivery, Message, Overflow, QueueSpec, Subscription,
};
use crate::{HEADER_DEATH_QUEUE, HEADER_DEATH_REASON};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How long a check waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a check waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(500);

/// A name unique to this run: `<prefix>.<what>.<random hex>`.
#[must_use]
pub fn unique_name(prefix: &str, what: &str) -> String {
    format!("{prefix}.{what}.{:016x}", rand::random::<u64>())
}

#[track_caller]
fn ok<T>(result: Result<T, BrokerError>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e} ({e:?})"),
    }
}

/// The next delivery, which must arrive within [`WAIT`].
pub async fn next_within(sub: &mut dyn Subscription, what: &str) -> Delivery {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(Ok(d))) => d,
        Ok(Some(Err(e))) => panic!("{what}: subscription error {e} ({e:?})"),
        Ok(None) => panic!("{what}: subscription ended"),
        Err(_) => panic!("{what}: no delivery within {WAIT:?}"),
    }
}

/// Asserts that no delivery arrives within [`QUIET`].
pub async fn assert_quiet(sub: &mut dyn Subscription, what: &str) {
    if let Ok(item) = tokio::time::timeout(QUIET, sub.next()).await {
        panic!("{what}: expected nothing, got {item:?}");
    }
}

async fn depth_eventually(broker: &dyn Broker, queue: &str, expected: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let depth = ok(broker.queue_depth(queue).await, "queue_depth");
        if depth == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue {queue}: depth {depth}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn declared(broker: &dyn Broker, prefix: &str, what: &str, spec: &QueueSpec) -> String {
    let queue = unique_name(prefix, what);
    ok(broker.declare_queue(&queue, spec).await, "declare_queue");
    queue
}

async fn cleanup(broker: &dyn Broker, queue: &str) {
    ok(broker.delete_queue(queue).await, "delete_queue");
}

/// A message round-trips with body and headers; a first delivery has count 0.
pub async fn round_trip_with_headers(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "roundtrip", &QueueSpec::default()).await;
    let msg = Message::new(&b"\x00hello\xff"[..])
        .with_header("job", "j-1")
        .with_header("tile", "3/4")
        .with_header("unicode", "héllo ✓");
    ok(b.publish(&q, msg.clone()).await, "publish");
    let mut sub = ok(b.consume(&q, 10).await, "consume");
    let d = next_within(&mut *sub, "round trip").await;
    assert_eq!(d.body, msg.body);
    assert_eq!(d.headers, msg.headers);
    assert!(!d.redelivered);
    assert_eq!(d.delivery_count, 0);
    assert_eq!(d.queue(), q);
    ok(d.ack().await, "ack");
    drop(sub);
    cleanup(b, &q).await;
}

/// At most `prefetch` deliveries are unsettled; settling one lets the next through.
pub async fn prefetch_bound(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "prefetch", &QueueSpec::default()).await;
    for i in 0..3 {
        ok(b.publish(&q, Message::new(vec![i])).await, "publish");
    }
    let mut sub = ok(b.consume(&q, 2).await, "consume");
    let d0 = next_within(&mut *sub, "first").await;
    let d1 = next_within(&mut *sub, "second").await;
    assert_quiet(&mut *sub, "third while two are unacked").await;
    ok(d0.ack().await, "ack");
    let d2 = next_within(&mut *sub, "third after an ack").await;
    let bodies: BTreeSet<_> = [&d1, &d2].iter().map(|d| d.body.to_vec()).collect();
    assert_eq!(bodies.len(), 2);
    ok(d1.ack().await, "ack");
    ok(d2.ack().await, "ack");
    drop(sub);
    cleanup(b, &q).await;
}

/// An acked message is gone: a new consumer does not get it again.
pub async fn ack_removes(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "ack", &QueueSpec::default()).await;
    ok(b.publish(&q, Message::new("once")).await, "publish");
    let mut sub = ok(b.consume(&q, 1).await, "consume");
    ok(next_within(&mut *sub, "delivery").await.ack().await, "ack");
    drop(sub);
    depth_eventually(b, &q, 0).await;
    let mut sub = ok(b.consume(&q, 1).await, "consume again");
    assert_quiet(&mut *sub, "after ack").await;
    drop(sub);
    cleanup(b, &q).await;
}

/// `retry` redelivers the message with `redelivered` set and the count incremented.
pub async fn retry_redelivers_with_count(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "retry", &QueueSpec::default()).await;
    ok(
        b.publish(&q, Message::new("again").with_header("k", "v"))
            .await,
        "publish",
    );
    let mut sub = ok(b.consume(&q, 1).await, "consume");
    let d = next_within(&mut *sub, "first").await;
    assert_eq!(d.delivery_count, 0);
    ok(d.retry().await, "retry");
    let d = next_within(&mut *sub, "second").await;
    assert_eq!(&d.body[..], b"again");
    assert!(d.redelivered);
    assert_eq!(d.delivery_count, 1);
    assert_eq!(d.headers.get("k").map(String::as_str), Some("v"));
    ok(d.retry().await, "retry");
    let d = next_within(&mut *sub, "third").await;
    assert_eq!(d.delivery_count, 2);
    ok(d.ack().await, "ack");
    drop(sub);
    cleanup(b, &q).await;
}

/// With `delivery_limit = 2`, a message retried a third time lands in the dead-letter queue.
pub async fn delivery_limit_dead_letters(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let spec = QueueSpec {
        delivery_limit: 2,
        ..QueueSpec::default()
    };
    let q = declared(b, prefix, "limit", &spec).await;
    ok(
        b.publish(&q, Message::new("poison").with_header("k", "v"))
            .await,
        "publish",
    );
    let mut sub = ok(b.consume(&q, 1).await, "consume");
    for expected_count in 0..=2 {
        let d = next_within(&mut *sub, "delivery under the limit").await;
        assert_eq!(d.delivery_count, expected_count);
        ok(d.retry().await, "retry");
    }
    assert_quiet(&mut *sub, "after the delivery limit").await;
    drop(sub);
    let dlq = dead_letter_queue(&q);
    let mut dead = ok(b.consume(&dlq, 1).await, "consume dead-letter queue");
    let d = next_within(&mut *dead, "dead-lettered message").await;
    assert_eq!(&d.body[..], b"poison");
    assert_eq!(d.headers.get("k").map(String::as_str), Some("v"));
    assert_eq!(
        d.headers.get(HEADER_DEATH_REASON).map(String::as_str),
        Some("delivery_limit")
    );
    assert_eq!(d.headers.get(HEADER_DEATH_QUEUE), Some(&q));
    ok(d.ack().await, "ack");
    drop(dead);
    depth_eventually(b, &q, 0).await;
    cleanup(b, &q).await;
}

/// `dead_letter` sends the message straight to the dead-letter queue.
pub async fn dead_letter_goes_to_dlq(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "reject", &QueueSpec::default()).await;
    ok(
        b.publish(&q, Message::new("bad").with_header("k", "v"))
            .await,
        "publish",
    );
    let mut sub = ok(b.consume(&q, 1).await, "consume");
    ok(
        next_within(&mut *sub, "delivery").await.dead_letter().await,
        "dead_letter",
    );
    assert_quiet(&mut *sub, "after dead_letter").await;
    let dlq = dead_letter_queue(&q);
    depth_eventually(b, &dlq, 1).await;
    let mut dead = ok(b.consume(&dlq, 1).await, "consume dead-letter queue");
    let d = next_within(&mut *dead, "dead-lettered message").await;
    assert_eq!(&d.body[..], b"bad");
    assert_eq!(d.headers.get("k").map(String::as_str), Some("v"));
    assert_eq!(
        d.headers.get(HEADER_DEATH_REASON).map(String::as_str),
        Some("rejected")
    );
    ok(d.ack().await, "ack");
    drop((sub, dead));
    cleanup(b, &q).await;
}

/// Dropping a subscription returns its unacked deliveries; settling one of them afterwards
/// fails with a retryable error and the message is redelivered.
pub async fn dropped_subscription_requeues(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "drop", &QueueSpec::default()).await;
    ok(b.publish(&q, Message::new("m0")).await, "publish");
    ok(b.publish(&q, Message::new("m1")).await, "publish");
    let mut sub = ok(b.consume(&q, 2).await, "consume");
    let d0 = next_within(&mut *sub, "first").await;
    let d1 = next_within(&mut *sub, "second").await;
    drop(sub);
    // Let an AMQP channel close reach the broker.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = d0
        .ack()
        .await
        .expect_err("ack after the subscription was dropped");
    assert!(err.is_retryable(), "{err:?}");
    drop(d1);
    let mut sub = ok(b.consume(&q, 2).await, "consume again");
    let mut bodies = BTreeSet::new();
    for _ in 0..2 {
        let d = next_within(&mut *sub, "redelivery").await;
        assert!(d.redelivered);
        assert_eq!(d.delivery_count, 1);
        bodies.insert(d.body.to_vec());
        ok(d.ack().await, "ack");
    }
    assert_eq!(bodies, BTreeSet::from([b"m0".to_vec(), b"m1".to_vec()]));
    drop(sub);
    cleanup(b, &q).await;
}

/// Two consumers of one queue share the work.
pub async fn consumers_share_work(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "share", &QueueSpec::default()).await;
    let mut a = ok(b.consume(&q, 1).await, "consume a");
    let mut c = ok(b.consume(&q, 1).await, "consume b");
    ok(b.publish(&q, Message::new("m0")).await, "publish");
    ok(b.publish(&q, Message::new("m1")).await, "publish");
    let da = next_within(&mut *a, "consumer a").await;
    let dc = next_within(&mut *c, "consumer b").await;
    let bodies = BTreeSet::from([da.body.to_vec(), dc.body.to_vec()]);
    assert_eq!(bodies, BTreeSet::from([b"m0".to_vec(), b"m1".to_vec()]));
    ok(da.ack().await, "ack");
    ok(dc.ack().await, "ack");
    drop((a, c));
    cleanup(b, &q).await;
}

/// Many concurrent publishes (more than the confirm window) all arrive.
pub async fn concurrent_publishes(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "concurrent", &QueueSpec::default()).await;
    let n = 300u32;
    let results = futures::future::join_all(
        (0..n).map(|i| b.publish(&q, Message::new(i.to_le_bytes().to_vec()))),
    )
    .await;
    for r in results {
        ok(r, "concurrent publish");
    }
    depth_eventually(b, &q, u64::from(n)).await;
    cleanup(b, &q).await;
}

/// Every event subscriber gets every event.
pub async fn events_fan_out(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let ex = unique_name(prefix, "events");
    let mut s1 = ok(b.subscribe_events(&ex).await, "subscribe 1");
    let mut s2 = ok(b.subscribe_events(&ex).await, "subscribe 2");
    for i in 0..3u8 {
        let msg = Message::new(vec![i]).with_header("kind", "progress");
        ok(b.publish_event(&ex, msg).await, "publish_event");
    }
    for sub in [&mut s1, &mut s2] {
        for i in 0..3u8 {
            let d = next_within(&mut **sub, "event").await;
            assert_eq!(&d.body[..], &[i]);
            assert_eq!(d.headers.get("kind").map(String::as_str), Some("progress"));
            ok(d.ack().await, "ack event");
        }
    }
    drop((s1, s2));
    // Events without subscribers are dropped, not errors.
    ok(
        b.publish_event(&ex, Message::new("nobody")).await,
        "publish_event",
    );
    ok(b.delete_exchange(&ex).await, "delete_exchange");
}

/// `queue_depth` counts ready messages, not unacked ones.
pub async fn queue_depth_counts_ready(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "depth", &QueueSpec::default()).await;
    depth_eventually(b, &q, 0).await;
    for i in 0..3 {
        ok(b.publish(&q, Message::new(vec![i])).await, "publish");
    }
    depth_eventually(b, &q, 3).await;
    let mut sub = ok(b.consume(&q, 1).await, "consume");
    let d = next_within(&mut *sub, "delivery").await;
    depth_eventually(b, &q, 2).await;
    ok(d.ack().await, "ack");
    drop(sub);
    depth_eventually(b, &q, 2).await;
    cleanup(b, &q).await;
}

/// `queue_consumers` counts live subscriptions of a queue, on any connection.
pub async fn queue_consumers_counts_subscriptions(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "consumers", &QueueSpec::default()).await;
    let consumers_eventually = |expected: u64| {
        let q = q.clone();
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let n = ok(b.queue_consumers(&q).await, "queue_consumers");
                if n == expected {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "queue {q}: {n} consumers, expected {expected}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    consumers_eventually(0).await;
    let first = ok(b.consume(&q, 1).await, "consume");
    let second = ok(b.consume(&q, 1).await, "consume");
    consumers_eventually(2).await;
    drop(first);
    consumers_eventually(1).await;
    drop(second);
    consumers_eventually(0).await;
    let err = b
        .queue_consumers(&format!("{q}-missing"))
        .await
        .expect_err("consumers of a missing queue");
    assert!(matches!(err, BrokerError::QueueNotFound { .. }), "{err:?}");
    cleanup(b, &q).await;
}

/// Messages over `max_message_bytes` are refused with a clear error; one at the limit passes.
pub async fn oversized_rejected(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let limit = b.max_message_bytes();
    let q = declared(b, prefix, "size", &QueueSpec::default()).await;
    let err = b
        .publish(&q, Message::new(vec![7u8; limit + 1]))
        .await
        .expect_err("oversized publish");
    assert!(
        matches!(&err, BrokerError::MessageTooLarge { size, limit: l, target } if *size == limit + 1 && *l == limit && *target == q),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains(&q), "{err}");
    let err = b
        .publish_event(&q, Message::new(vec![7u8; limit + 1]))
        .await
        .expect_err("oversized event");
    assert!(
        matches!(err, BrokerError::MessageTooLarge { .. }),
        "{err:?}"
    );
    ok(
        b.publish(&q, Message::new(vec![7u8; limit])).await,
        "publish at the limit",
    );
    let mut sub = ok(b.consume(&q, 1).await, "consume");
    let d = next_within(&mut *sub, "message at the limit").await;
    assert_eq!(d.body.len(), limit);
    ok(d.ack().await, "ack");
    drop(sub);
    cleanup(b, &q).await;
}

/// Publishing to a queue that does not exist fails (not retryable) and leaves the broker usable.
pub async fn unroutable_publish_fails(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let missing = unique_name(prefix, "missing");
    let err = b
        .publish(&missing, Message::new("lost"))
        .await
        .expect_err("publish to a missing queue");
    assert!(matches!(err, BrokerError::Unroutable { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let err = b
        .consume(&missing, 1)
        .await
        .err()
        .expect("consume a missing queue");
    assert!(matches!(err, BrokerError::QueueNotFound { .. }), "{err:?}");
    let err = b
        .queue_depth(&missing)
        .await
        .expect_err("depth of a missing queue");
    assert!(matches!(err, BrokerError::QueueNotFound { .. }), "{err:?}");
    let q = declared(b, prefix, "after-unroutable", &QueueSpec::default()).await;
    ok(
        b.publish(&q, Message::new("ok")).await,
        "publish after an unroutable one",
    );
    depth_eventually(b, &q, 1).await;
    cleanup(b, &q).await;
    ok(b.delete_queue(&missing).await, "deleting a missing queue");
}

/// Declaring is idempotent; re-declaring with other limits fails clearly.
pub async fn declare_idempotent(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let spec = QueueSpec {
        max_length: Some(100),
        ..QueueSpec::default()
    };
    let q = declared(b, prefix, "idem", &spec).await;
    ok(b.publish(&q, Message::new("kept")).await, "publish");
    ok(b.declare_queue(&q, &spec).await, "second declare");
    depth_eventually(b, &q, 1).await;
    let other = QueueSpec {
        max_length: Some(200),
        ..QueueSpec::default()
    };
    let err = b
        .declare_queue(&q, &other)
        .await
        .expect_err("mismatched declare");
    assert!(matches!(err, BrokerError::QueueMismatch { .. }), "{err:?}");
    assert!(!err.is_retryable());
    ok(b.declare_queue(&q, &spec).await, "declare after a mismatch");
    for bad in ["", &"x".repeat(300)] {
        let err = b.declare_queue(bad, &spec).await.expect_err("bad name");
        assert!(matches!(err, BrokerError::InvalidName { .. }), "{err:?}");
    }
    cleanup(b, &q).await;
}

/// A full queue with `reject-publish` overflow refuses publishes with a retryable error.
pub async fn full_queue_rejects(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let spec = QueueSpec {
        max_length: Some(2),
        overflow: Overflow::RejectPublish,
        ..QueueSpec::default()
    };
    let q = declared(b, prefix, "full", &spec).await;
    ok(b.publish(&q, Message::new("a")).await, "publish 1");
    ok(b.publish(&q, Message::new("b")).await, "publish 2");
    let mut rejected = None;
    for _ in 0..3 {
        if let Err(e) = b.publish(&q, Message::new("c")).await {
            rejected = Some(e);
            break;
        }
    }
    let err = rejected.expect("a publish to a full queue must fail");
    assert!(
        matches!(err, BrokerError::PublishRejected { .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(b.queue_depth(&q).await.is_ok_and(|d| d <= 3));
    cleanup(b, &q).await;
}

/// A full queue with `drop-head` overflow dead-letters its oldest message to make room.
pub async fn full_queue_drops_head(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let spec = QueueSpec {
        max_length: Some(2),
        overflow: Overflow::DropHead,
        ..QueueSpec::default()
    };
    let q = declared(b, prefix, "drophead", &spec).await;
    for body in ["a", "b", "c"] {
        ok(b.publish(&q, Message::new(body)).await, "publish");
    }
    depth_eventually(b, &q, 2).await;
    let mut dead = ok(
        b.consume(&dead_letter_queue(&q), 1).await,
        "consume dead-letter queue",
    );
    let d = next_within(&mut *dead, "dropped head").await;
    assert_eq!(&d.body[..], b"a");
    assert_eq!(
        d.headers.get(HEADER_DEATH_REASON).map(String::as_str),
        Some("maxlen")
    );
    ok(d.ack().await, "ack");
    let mut sub = ok(b.consume(&q, 2).await, "consume");
    for expected in [&b"b"[..], b"c"] {
        let d = next_within(&mut *sub, "remaining").await;
        assert_eq!(&d.body[..], expected);
        ok(d.ack().await, "ack");
    }
    drop((dead, sub));
    cleanup(b, &q).await;
}

/// Deleting a queue ends its subscriptions.
pub async fn delete_ends_subscription(broker: Arc<dyn Broker>, prefix: &str) {
    let b = &*broker;
    let q = declared(b, prefix, "delete", &QueueSpec::default()).await;
    let mut sub = ok(b.consume(&q, 1).await, "consume");
    cleanup(b, &q).await;
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(None) => {}
        other => panic!("expected the subscription to end, got {other:?}"),
    }
    let err = b
        .queue_depth(&q)
        .await
        .expect_err("depth of a deleted queue");
    assert!(matches!(err, BrokerError::QueueNotFound { .. }), "{err:?}");
}

/// One `#[tokio::test]` per conformance check. `$make` is an expression evaluating to a future
/// of `Arc<dyn Broker>` (each test gets a fresh one); `$prefix` names the resources.
#[macro_export]
macro_rules! conformance_tests {
    ($prefix:expr, $make:expr) => {
        $crate::conformance_tests!(@each $prefix, $make;
            round_trip_with_headers, prefetch_bound, ack_removes, retry_redelivers_with_count,
            delivery_limit_dead_letters, dead_letter_goes_to_dlq, dropped_subscription_requeues,
            consumers_share_work, concurrent_publishes, events_fan_out, queue_depth_counts_ready,
            queue_consumers_counts_subscriptions, oversized_rejected,
            unroutable_publish_fails, declare_idempotent, full_queue_rejects, full_queue_drops_head,
            delete_ends_subscription);
    };
    (@each $prefix:expr, $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let broker: ::std::sync::Arc<dyn $crate::Broker> = $make.await;
                $crate::conformance::$name(broker, $prefix).await;
            }
        )*
    };
}
