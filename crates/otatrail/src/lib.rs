//! otatrail: a self-hosted, AWS-wire-compatible IoT OTA update service whose every
//! control-plane call is audited in a CloudTrail-compatible trail.
//!
//! Layers, outermost first (see ARCHITECTURE.md):
//! - [`api`]: wire protocols, authentication, routing, error rendering;
//! - [`app`]: one function per operation, combining domain rules with the stores;
//! - [`domain`]: resources and their rules; no I/O, no wire formats;
//! - [`store`] and [`objects`]: state and bucket storage behind traits.

pub mod api;
pub mod app;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod events_cli;
/// Fuzz entry points (`tests/hostile_input.rs`, `fuzz/`); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod log_sink;
pub mod objects;
pub mod outbound;
pub mod s3;
pub mod server;
pub mod store;
pub mod thread_priority;
pub mod validate_logs;
