//! One shutdown mechanism for every long-running part: a cancellation token that says "stop",
//! and a task tracker that waits until everything has stopped.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Shutdown {
    pub token: CancellationToken,
    pub tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resolves once shutdown was requested.
    pub(crate) async fn requested(&self) {
        self.token.cancelled().await
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Ask every part to stop, then wait until all tracked tasks have ended.
    pub async fn shutdown_and_wait(&self) {
        self.token.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Resolves on SIGINT or SIGTERM.
    pub async fn signal() {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
    }
}
