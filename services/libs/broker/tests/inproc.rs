//! The conformance suite against the in-process broker.

use broker::{Broker, InProcessBroker, InProcessConfig};
use std::sync::Arc;

async fn make() -> Arc<dyn Broker> {
    Arc::new(InProcessBroker::with_config(InProcessConfig {
        max_message_bytes: 64 * 1024,
        ..InProcessConfig::default()
    }))
}

broker::conformance_tests!("terrafill-test.inproc", make());
