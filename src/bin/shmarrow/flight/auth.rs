//! Bearer-token authentication of every call.

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// Bearer-token check on every call (all or nothing: no call is served without it).
#[derive(Clone)]
pub struct Auth(pub Option<Arc<String>>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.0 else {
            return Ok(request);
        };
        match bearer(request.metadata()) {
            Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong bearer token")),
            None => Err(Status::unauthenticated(
                "this server requires the header authorization: Bearer <token>",
            )),
        }
    }
}

fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut map = MetadataMap::new();
        map.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert_eq!(bearer(&map), Some("s3cret"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
