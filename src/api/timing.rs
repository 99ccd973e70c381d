//! `Server-Timing` (W3C Server Timing): every API answer says how long fleetup spent on it,
//! and the polled rollout view says where.
//!
//! A client's latency is the server's work plus everything around it: the connection's
//! queue, the scheduler of a busy machine, the bytes on the wire. Browsers show these
//! durations beside a request's own timeline (Chrome and Firefox developer tools, "Timing"),
//! and `bench/scale.sh` records them for its slowest answers, so that a slow poll says
//! whether fleetup worked long on it or waited for the machine.
//!
//! - `app`: from the API's router taking the request to its answer's head (every route).
//! - on `GET /rollouts/{id}` also: `read` (the rollout's record), `lock` (waiting for the
//!   view, which another request or its refresh may be bringing up to date), `changes`
//!   (reading what changed since the view last looked), `apply` (applying it and writing
//!   the changed rows), `write` (putting the answer together).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::HeaderName;
use axum::middleware::Next;
use axum::response::Response;

/// The header's name.
static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Adds `app;dur=MS` to every answer of the router it wraps.
pub(super) async fn app(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let mut response = next.run(req).await;
    let mut phases = Phases::default();
    phases.add("app", start.elapsed());
    phases.append_to(&mut response);
    response
}

/// Named durations, written as one `Server-Timing` value: `name;dur=MS, …` in the order
/// they were added.
#[derive(Default)]
pub(crate) struct Phases(String);

impl Phases {
    pub(crate) fn add(&mut self, name: &'static str, took: Duration) {
        if !self.0.is_empty() {
            self.0.push_str(", ");
        }
        // Milliseconds with microseconds, as the specification's examples write them.
        let _ = write!(self.0, "{name};dur={:.3}", took.as_secs_f64() * 1000.0);
    }

    /// The phase since `*mark`, and `*mark` moved to now.
    pub(crate) fn lap(&mut self, name: &'static str, mark: &mut Instant) {
        let now = Instant::now();
        self.add(name, now.duration_since(*mark));
        *mark = now;
    }

    /// Adds the phases to `response` as one more `Server-Timing` header (none when there are
    /// no phases).
    pub(crate) fn append_to(&self, response: &mut Response) {
        if let Some(v) = self.header() {
            response.headers_mut().append(SERVER_TIMING.clone(), v);
        }
    }

    fn header(&self) -> Option<HeaderValue> {
        if self.0.is_empty() {
            return None;
        }
        HeaderValue::from_str(&self.0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_written_in_order_as_server_timing_metrics() {
        let mut p = Phases::default();
        assert!(p.header().is_none());
        p.add("read", Duration::from_micros(1500));
        p.add("write", Duration::from_micros(20));
        let v = p.header().expect("a header value");
        assert_eq!(v.to_str().ok(), Some("read;dur=1.500, write;dur=0.020"));
    }
}
