//! The HTTP accept loop. `axum::serve` offers neither a connection cap nor a header-read
//! timeout, so a client opening connections and sending nothing (slowloris) could hold file
//! descriptors until the process had none left for TFTP and FTP. Here each connection needs a
//! permit of a semaphore (beyond the cap, new connections wait in the kernel's accept queue,
//! using no descriptor of ours), and hyper closes a connection whose request head has not
//! arrived within the header timeout, including a kept-alive one idle between requests.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;

/// The kernel's send buffer of each API connection (Linux doubles it, up to `wmem_max`):
/// enough for a rollout view of thousands of devices to be handed to the kernel at once. With
/// the kernel's own (a few hundred KB on loopback), hyper wrote such an answer in pieces, and
/// between two pieces the connection's task waited for a turn on the runtime's workers behind
/// the agents' calls: on a busy node a 2.5 MB poll took 8 ms (44 ms at worst) after its head,
/// where nginx took 4 ms (19 ms) for the same bytes (`bench/scale.sh`; the poller then also
/// counted its own copy of every other answer in those figures, fixed since). It is memory only
/// while an answer waits for its client, and at most this much per connection.
const SEND_BUFFER: usize = 4 << 20;

/// Limits of the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once, event streams included.
    pub max_connections: usize,
    /// Longest wait for a request head (the request line and headers).
    pub header_timeout: Duration,
}

/// Serve `app` on `listener` until `shutdown` is requested; connections run as tasks of
/// `shutdown.tasks` and finish their current request on shutdown (hyper's graceful shutdown).
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, shutdown: Shutdown) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut at_cap = false;
    loop {
        if permits.available_permits() == 0 {
            if !at_cap {
                tracing::warn!(
                    max = limits.max_connections,
                    "HTTP connection limit reached; new connections wait (--http-max-connections)"
                );
            }
            at_cap = true;
        } else {
            at_cap = false;
        }
        let permit = tokio::select! {
            _ = shutdown.requested() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.requested() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::select! {
                        _ = shutdown.requested() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        // A response's last segment goes at once, not after the client's delayed ACK of the
        // ones before it.
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let service = TowerToHyperService::new(app.clone());
        let token = shutdown.token.clone();
        shutdown.tasks.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            // Answers are copied into the connection's own buffer and written out in large
            // writes, not queued as they come: the rollout view's answer is thousands of
            // small chunks (one per device row), and hyper's vectored write takes at most 16
            // of them at a time, hundreds of system calls and as many wake-ups of the client
            // for one answer.
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .writev(false);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
}
