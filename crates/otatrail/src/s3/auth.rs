//! S3 authentication on otatrail's identities. `s3s` verifies the signature with the secret
//! [`Auth`] returns; [`Access`] then enforces what SigV4 alone does not (active keys, session
//! tokens and their expiry) and leaves the principal in the request extensions.

use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Result, s3_error};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::domain::Principal;
use crate::domain::identity::KeyStatus;

pub struct Auth {
    pub app: Arc<App>,
}

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.app.identities.lookup(access_key).await {
            Ok(Some(k)) => Ok(SecretKey::from(k.secret.expose())),
            Ok(None) => Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records.")),
            Err(e) => {
                tracing::error!(error = %e, "access key lookup failed");
                Err(s3_error!(InternalError))
            }
        }
    }
}

pub struct Access {
    pub app: Arc<App>,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(creds) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Anonymous access is not allowed; sign the request."));
        };
        let access_key = creds.access_key.clone();
        let key = match self.app.identities.lookup(&access_key).await {
            Ok(Some(k)) => k,
            Ok(None) => return Err(s3_error!(InvalidAccessKeyId)),
            Err(_) => return Err(s3_error!(InternalError)),
        };
        if key.status != KeyStatus::Active {
            return Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided is inactive."));
        }
        if let Some(session) = &key.session {
            // Header auth carries the token in a header, presigned URLs in the query.
            let token = cx
                .headers()
                .get("x-amz-security-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| {
                    cx.uri().query().and_then(|q| {
                        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "X-Amz-Security-Token").map(|(_, v)| v.into_owned())
                    })
                });
            let matches = token.is_some_and(|t| {
                let h = otatrail_sigv4::sha256_hex(t.as_bytes());
                bool::from(h.as_bytes().ct_eq(session.token_sha256.as_bytes()))
            });
            if !matches {
                return Err(forbidden("InvalidToken", "The provided token is malformed or otherwise invalid."));
            }
            if self.app.clock.now() >= session.expires_at {
                return Err(forbidden("ExpiredToken", "The provided token has expired."));
            }
        }
        cx.extensions_mut().insert(key.principal);
        Ok(())
    }
}

/// A 403 with an S3 code `s3s` has no status for.
fn forbidden(code: &'static str, message: &'static str) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), message);
    e.set_status_code(http::StatusCode::FORBIDDEN);
    e
}

/// The principal [`Access`] resolved for this request.
pub fn principal<T>(req: &S3Request<T>) -> S3Result<Principal> {
    req.extensions.get::<Principal>().cloned().ok_or_else(|| s3_error!(AccessDenied))
}
