use std::fmt;

/// Why a request's signature was not accepted. The API layer maps each kind to the error code
/// of its protocol (for instance `InvalidSignatureException` for JSON services and
/// `SignatureDoesNotMatch` for query services).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigV4Error {
    /// The `Authorization` header is malformed or lacks a component.
    IncompleteSignature(String),
    /// The request time is more than 15 minutes from the server clock.
    SignatureExpired(String),
    /// The credential scope does not fit the request (date, region or service).
    ScopeMismatch(String),
    /// The signature differs from the one the server computed.
    SignatureMismatch { canonical_request: String, string_to_sign: String },
}

impl SigV4Error {
    /// The message AWS sends for this failure.
    pub fn message(&self) -> String {
        match self {
            SigV4Error::IncompleteSignature(m) | SigV4Error::SignatureExpired(m) | SigV4Error::ScopeMismatch(m) => m.clone(),
            SigV4Error::SignatureMismatch { canonical_request, string_to_sign } => format!(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'{canonical_request}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
            ),
        }
    }
}

impl fmt::Display for SigV4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for SigV4Error {}
