//! The S3 endpoint: its own listener (path-style), served by `s3s`, which parses requests,
//! verifies SigV4 in every form S3 clients send (signed and unsigned payloads, aws-chunked
//! streaming with trailers, presigned URLs) and renders S3's XML. This module is the S3
//! protocol layer: it resolves the principal and maps each operation onto `app::buckets`.

mod auth;
// Visible to the crate for `crate::fuzzing`, which drives the parsing done here.
pub(crate) mod ops;
mod record;

use std::sync::Arc;

use s3s::service::{S3Service, S3ServiceBuilder};

use crate::app::App;

pub use auth::principal;

/// The S3 service over the application.
pub fn service(app: Arc<App>) -> S3Service {
    let mut builder = S3ServiceBuilder::new(ops::S3Api { app: app.clone() });
    builder.set_auth(auth::Auth { app: app.clone() });
    builder.set_access(auth::Access { app });
    builder.build()
}
