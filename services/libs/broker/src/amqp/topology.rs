//! Queue arguments of the RabbitMQ topology: quorum queues, delivery limit, dead-lettering.

use super::*;

pub(super) fn queue_arguments(queue: &str, spec: &QueueSpec) -> FieldTable {
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

pub(super) fn quorum_only() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

pub(super) fn declare_error(e: lapin::Error, queue: &str) -> Failure {
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
