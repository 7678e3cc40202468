//! Caller authentication: `authorization: Bearer <token>` checked against the configured tokens
//! (several, so a token can be rotated without downtime). Applied to every service but health
//! (probes carry no credentials); a missing or wrong token is UNAUTHENTICATED. Tokens are
//! compared in constant time and never logged.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The accepted tokens; none means authentication is off.
#[derive(Clone, Default)]
pub(crate) struct BearerAuth {
    tokens: Arc<[Vec<u8>]>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BearerAuth({} tokens)", self.tokens.len())
    }
}

impl BearerAuth {
    pub(crate) fn new<'a>(tokens: impl IntoIterator<Item = &'a str>) -> BearerAuth {
        BearerAuth {
            tokens: tokens.into_iter().map(|t| t.as_bytes().to_vec()).collect(),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    fn check(&self, header: Option<&[u8]>) -> Result<(), Status> {
        if !self.is_enabled() {
            return Ok(());
        }
        let Some(header) = header else {
            return Err(Status::unauthenticated(
                "missing authorization: send `authorization: Bearer <token>`",
            ));
        };
        let given = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization: expected `Bearer <token>`"))?;
        // Compare against every token, always, so timing says nothing about which matched.
        let matched = self
            .tokens
            .iter()
            .fold(false, |any, t| any | constant_time_eq(t, given));
        if matched {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid token"))
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        self.check(header)?;
        Ok(request)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn any_configured_token_passes() {
        let auth = BearerAuth::new(["old-token", "new-token"]);
        assert!(auth.check(Some(b"Bearer old-token")).is_ok());
        assert!(auth.check(Some(b"Bearer new-token")).is_ok());
        for bad in [
            None,
            Some(&b"Bearer other"[..]),
            Some(b"Bearer old-token2"),
            Some(b"Basic old-token"),
            Some(b"old-token"),
            Some(b"Bearer "),
        ] {
            let err = auth.check(bad).unwrap_err();
            assert_eq!(err.code(), Code::Unauthenticated, "{bad:?}");
            assert!(!err.message().contains("old-token"), "{}", err.message());
        }
    }

    #[test]
    fn no_tokens_means_off() {
        assert!(BearerAuth::default().check(None).is_ok());
        assert!(!format!("{:?}", BearerAuth::new(["s3cret"])).contains("s3cret"));
    }
}
