//! Mapping lapin errors to retryable or final failures, and headers to and from AMQP field tables.

use super::*;

/// An operation's failure: worth retrying on a fresh connection, or final.
pub(super) enum Failure {
    Transient(lapin::Error),
    Final(BrokerError),
}

pub(super) fn soft_error(e: &lapin::Error) -> Option<&AMQPSoftError> {
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
pub(super) fn is_connection_loss(e: &lapin::Error) -> bool {
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

pub(super) fn classify(e: lapin::Error, op: &'static str, target: &str) -> Failure {
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

pub(super) fn short(name: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(name).map_err(|_| BrokerError::InvalidName {
        name: name.into(),
        reason: "longer than 255 bytes",
    })
}

pub(super) fn to_field_table(headers: &BTreeMap<String, String>) -> FieldTable {
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
pub(super) fn from_field_table(table: Option<&FieldTable>) -> (BTreeMap<String, String>, u32) {
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
