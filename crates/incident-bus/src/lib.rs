//! Everything between a service and NATS JetStream: connecting, the streams and their
//! settings, the relay that publishes a service's event log to its stream exactly once, and the
//! idempotent durable consumer the services read each other's events with.

pub mod connect;
pub mod consumer;
pub mod floor;
pub mod rebuild;
pub mod relay;
pub mod streams;

pub use connect::{NatsAuth, NatsOptions, connect};
pub use consumer::{ConsumerSpec, Delivery, Handled};
pub use relay::{Relay, RelayStatus};
pub use streams::{StreamSpec, ensure_stream, ensure_stream_replicated};
