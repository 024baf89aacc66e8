//! The conformance suite, and connection behaviour, against a real RabbitMQ at
//! `TERRAFILL_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`). These tests
//! fail, never skip, when RabbitMQ is unreachable.

use broker::{AmqpBroker, AmqpConfig, Broker};
use std::sync::Arc;
use std::time::Duration;

fn amqp_url() -> String {
    std::env::var("TERRAFILL_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn test_config() -> AmqpConfig {
    AmqpConfig {
        connect_timeout: Duration::from_secs(10),
        max_message_bytes: 1024 * 1024,
        ..AmqpConfig::default()
    }
}

async fn make() -> Arc<dyn Broker> {
    match AmqpBroker::connect(&amqp_url(), test_config()).await {
        Ok(b) => Arc::new(b),
        Err(e) => panic!("RabbitMQ required for this test: {e}"),
    }
}

broker::conformance_tests!("terrafill-test.amqp", make());

/// `host:port` of the test broker.
fn upstream() -> String {
    let url = amqp_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}

/// The test URL pointed at another `host:port`.
fn url_via(addr: &str) -> String {
    amqp_url().replacen(&upstream(), addr, 1)
}

#[tokio::test]
async fn refused_connection_fails_within_timeout_and_redacts_password() {
    let cfg = AmqpConfig {
        connect_timeout: Duration::from_secs(1),
        ..AmqpConfig::default()
    };
    let started = std::time::Instant::now();
    let err = AmqpBroker::connect("amqp://guest:s3cr3t@127.0.0.1:1/%2f", cfg)
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(
        !text.contains("s3cr3t") && !format!("{err:?}").contains("s3cr3t"),
        "{text}"
    );
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn silent_server_fails_within_timeout() {
    // Accepts TCP connections and never speaks AMQP.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let cfg = AmqpConfig {
        connect_timeout: Duration::from_secs(1),
        ..AmqpConfig::default()
    };
    let started = std::time::Instant::now();
    let url = format!("amqp://guest:guest@{addr}/%2f");
    let err = AmqpBroker::connect(&url, cfg)
        .await
        .expect_err("a silent server is not a broker");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, broker::BrokerError::ConnectTimeout { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn bad_credentials_fail_fast_and_not_retryable() {
    let url = amqp_url().replacen("guest:guest@", "guest:wrong-password@", 1);
    assert_ne!(
        url,
        amqp_url(),
        "test URL must carry guest:guest credentials"
    );
    let started = std::time::Instant::now();
    let err = AmqpBroker::connect(&url, test_config())
        .await
        .expect_err("wrong password");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(!err.is_retryable(), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("wrong-password"),
        "{err:?}"
    );
}

#[tokio::test]
async fn url_dispatch() {
    let err = broker::connect(Some("http://user:pw@example.com/"))
        .await
        .expect_err("http is not a broker scheme");
    assert!(
        matches!(err, broker::BrokerError::InvalidUrl { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("pw@"), "{err}");
    let b = broker::connect(None).await.expect("in-process");
    assert!(format!("{b:?}").contains("InProcessBroker"));
    let b = broker::connect(Some("inproc://"))
        .await
        .expect("in-process");
    assert!(format!("{b:?}").contains("InProcessBroker"));
    let b = broker::connect(Some(&amqp_url()))
        .await
        .expect("RabbitMQ required");
    assert!(format!("{b:?}").contains("AmqpBroker"));
}

/// A TCP proxy to the broker whose connections can be cut, to simulate a network failure.
struct Proxy {
    addr: String,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let registry = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().expect("lock").push(task);
            }
        });
        Self {
            addr,
            conns,
            accept,
        }
    }

    /// Cuts every open connection (the proxy keeps accepting new ones).
    fn sever(&self) {
        for task in self.conns.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.sever();
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_connection_loss() {
    use broker::conformance::{next_within, unique_name};
    use broker::{Message, QueueSpec};

    let proxy = Proxy::start(upstream()).await;
    let b = AmqpBroker::connect(&url_via(&proxy.addr), test_config())
        .await
        .expect("RabbitMQ required (through the test proxy)");
    let q = unique_name("terrafill-test.amqp", "reconnect");
    b.declare_queue(&q, &QueueSpec::default())
        .await
        .expect("declare");
    let mut sub = b.consume(&q, 10).await.expect("consume");
    b.publish(&q, Message::new("before"))
        .await
        .expect("publish");
    let d = next_within(&mut *sub, "before the cut").await;

    proxy.sever();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let err = d.ack().await.expect_err("ack on a dead channel");
    assert!(err.is_retryable(), "{err:?}");
    b.publish(&q, Message::new("after"))
        .await
        .expect("publish after the cut reconnects");

    // The same subscription re-subscribes and gets the redelivered message and the new one.
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let d = next_within(&mut *sub, "after the cut").await;
        if &d.body[..] == b"before" {
            assert!(d.redelivered);
        }
        seen.insert(d.body.to_vec());
        d.ack().await.expect("ack on the new channel");
    }
    assert_eq!(seen, [b"after".to_vec(), b"before".to_vec()].into());
    drop(sub);
    b.delete_queue(&q).await.expect("delete");
    b.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_dead_letters_oversized_messages() {
    use broker::conformance::{assert_quiet, next_within, unique_name};
    use broker::{dead_letter_queue, Message, QueueSpec};

    let publisher = make().await;
    let consumer = AmqpBroker::connect(
        &amqp_url(),
        AmqpConfig {
            max_message_bytes: 1000,
            ..test_config()
        },
    )
    .await
    .expect("RabbitMQ required");
    let q = unique_name("terrafill-test.amqp", "oversized-consume");
    publisher
        .declare_queue(&q, &QueueSpec::default())
        .await
        .expect("declare");
    publisher
        .publish(&q, Message::new(vec![1u8; 5000]))
        .await
        .expect("publish big");
    publisher
        .publish(&q, Message::new("small"))
        .await
        .expect("publish small");
    let mut sub = consumer.consume(&q, 10).await.expect("consume");
    let d = next_within(&mut *sub, "the small message").await;
    assert_eq!(&d.body[..], b"small");
    d.ack().await.expect("ack");
    assert_quiet(&mut *sub, "oversized message skipped").await;
    let mut dead = publisher
        .consume(&dead_letter_queue(&q), 1)
        .await
        .expect("consume DLQ");
    let d = next_within(&mut *dead, "oversized message in the DLQ").await;
    assert_eq!(d.body.len(), 5000);
    d.ack().await.expect("ack");
    drop((sub, dead));
    publisher.delete_queue(&q).await.expect("delete");
}
