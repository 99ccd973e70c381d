//! Whole-session helpers: read a device's facts, and wait for it to come back after a reload.

use tokio_util::sync::CancellationToken;

use super::{DeviceError, DeviceFacts, RestartEvidence, Session, Target, Timeouts};
use crate::inventory::Facts;

/// Log in and read the facts. The host key is returned when the target had none pinned, so
/// the caller can store it (trust on first use).
pub async fn facts(
    target: &Target,
    timeouts: &Timeouts,
) -> Result<(Facts, Option<String>), DeviceError> {
    let (facts, key) = read_facts(target, timeouts).await?;
    let new_key = target.known_host_key.is_none().then_some(key);
    Ok((facts.to_facts(), new_key))
}

/// Log in, read the facts and log out (also when reading failed); with the host key seen.
pub(crate) async fn read_facts(
    target: &Target,
    timeouts: &Timeouts,
) -> Result<(DeviceFacts, String), DeviceError> {
    let mut session = Session::open(target, timeouts).await?;
    let facts = session.facts().await;
    let key = session.host_key().to_string();
    session.close().await;
    Ok((facts?, key))
}

/// After a reload: wait for the session to be gone, the device to be unreachable, then
/// reachable again, and read its facts. `evidence` guards against talking to the
/// not-yet-reloaded box: a device that shows no sign of a restart has not reloaded yet.
pub async fn wait_back(
    target: &Target,
    timeouts: &Timeouts,
    evidence: &RestartEvidence,
    cancel: &CancellationToken,
) -> Result<(Session, DeviceFacts), DeviceError> {
    wait_back_watched(target, timeouts, evidence, cancel, &|_| {}).await
}

/// [`wait_back`], telling `seen_down` the moment the device was first seen down (a probe
/// refused or unanswered, or a shell that could not be had), once.
pub(crate) async fn wait_back_watched(
    target: &Target,
    timeouts: &Timeouts,
    evidence: &RestartEvidence,
    cancel: &CancellationToken,
    seen_down: &(dyn Fn(tokio::time::Instant) + Send + Sync),
) -> Result<(Session, DeviceFacts), DeviceError> {
    let started = tokio::time::Instant::now();
    let deadline = started + timeouts.reload;
    let addr = format!("{}:{}", target.host, target.port);
    let mut saw_down = false;
    let mut last_problem = "no answer yet".to_string();
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(DeviceError::NeverCameBack {
                device: target.name.clone(),
                secs: timeouts.reload.as_secs(),
                detail: format!(
                    "{}; last problem: {last_problem}",
                    if saw_down {
                        "it went down"
                    } else {
                        "it was never seen down"
                    }
                ),
            });
        }
        // A booting device does not answer at all: the connect times out. One probe lasts at
        // most the poll interval, so a fresh SYN goes out at least that often (within one
        // probe the kernel resends it after 1, 3, 7 s...).
        let probe_started = tokio::time::Instant::now();
        let probe = tokio::time::timeout(
            probe_timeout(timeouts),
            tokio::net::TcpStream::connect(&addr),
        );
        let reachable = tokio::select! {
            r = probe => match r {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("{addr} refuses connections ({e})")),
                Err(_) => Err(format!("{addr} does not answer")),
            },
            _ = cancel.cancelled() => return Err(DeviceError::Cancelled { device: target.name.clone() }),
        };
        let pause = match reachable {
            Err(problem) => {
                if !saw_down {
                    seen_down(tokio::time::Instant::now());
                }
                saw_down = true;
                last_problem = problem;
                // The probe's wait counts towards the poll interval.
                timeouts
                    .poll_interval
                    .saturating_sub(probe_started.elapsed())
            }
            Ok(()) => {
                match login_and_facts(target, timeouts).await {
                    Ok((session, facts)) => {
                        if saw_down || evidence.restarted(&facts.version) {
                            return Ok((session, facts));
                        }
                        session.close().await;
                        last_problem = "the device still runs since before the reload".into();
                    }
                    Err(
                        e @ (DeviceError::HostKeyChanged { .. } | DeviceError::AuthFailed { .. }),
                    ) => {
                        return Err(e);
                    }
                    Err(e) => {
                        // A box that accepts TCP but cannot give a shell is going down or booting.
                        if !saw_down {
                            seen_down(tokio::time::Instant::now());
                        }
                        saw_down = true;
                        last_problem = e.to_string();
                    }
                }
                timeouts.poll_interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return Err(DeviceError::Cancelled { device: target.name.clone() }),
        }
    }
}

/// How long one reachability probe waits for a TCP connect: the connect timeout, but no
/// longer than the poll interval (and at least a second, so a loaded network still answers).
fn probe_timeout(t: &Timeouts) -> std::time::Duration {
    t.connect
        .min(t.poll_interval.max(std::time::Duration::from_secs(1)))
}

async fn login_and_facts(
    target: &Target,
    timeouts: &Timeouts,
) -> Result<(Session, DeviceFacts), DeviceError> {
    let mut session = Session::open(target, timeouts).await?;
    let facts = session.facts().await?;
    Ok((session, facts))
}
