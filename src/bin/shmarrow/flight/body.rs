//! The tonic middleware that tells a complete upload from one its client cut off.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};

use tonic::Status;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

/// Whether a request body ended with END_STREAM (the client sent all of it), as opposed to a
/// reset (the client cancelled, or went away). tonic's `Streaming` reports a cancelled request
/// stream as a clean end, so an upload cut off by its client would look complete: `do_put`
/// checks this flag before publishing.
#[derive(Clone, Default)]
pub struct BodyEnd(Arc<AtomicBool>);

impl BodyEnd {
    pub fn ended(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

struct Watched {
    inner: tonic::body::Body,
    end: BodyEnd,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.end.0.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.end.0.store(true, Ordering::Release);
        }
        end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps every request body in [`Watched`], its [`BodyEnd`] in the request's extensions.
#[derive(Clone)]
pub struct WatchBodies<S>(pub S);

impl<S> Service<http::Request<tonic::body::Body>> for WatchBodies<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let end = BodyEnd::default();
        let (mut parts, inner) = request.into_parts();
        parts.extensions.insert(end.clone());
        let body = tonic::body::Body::new(Watched { inner, end });
        self.0.call(http::Request::from_parts(parts, body))
    }
}

impl<S: NamedService> NamedService for WatchBodies<S> {
    const NAME: &'static str = S::NAME;
}
