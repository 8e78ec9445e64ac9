//! Object bytes at rest. The embedded store keeps each object's bytes in encrypted blob files
//! ([`blob`]); their metadata is state (see `app::buckets`).

pub mod blob;
pub mod external_bucket;
