//! The engine's sense of time, injectable so that schedules and maintenance windows are tested
//! without waiting for real clocks.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::watch;

#[derive(Clone)]
pub enum Clock {
    System,
    Manual(ManualClock),
}

impl Clock {
    pub(crate) fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Manual(m) => *m.now.borrow(),
        }
    }

    /// Resolve once the clock reads `t` or later.
    pub(crate) async fn sleep_until(&self, t: Timestamp) {
        match self {
            Clock::System => {
                let now = Timestamp::now();
                if t > now {
                    let wait = now.duration_until(t).unsigned_abs();
                    tokio::time::sleep(wait).await;
                }
            }
            Clock::Manual(m) => {
                let mut rx = m.now.subscribe();
                // The sender lives in `m`, so this only ends when the time is reached.
                let _ = rx.wait_for(|now| *now >= t).await;
            }
        }
    }
}

/// A clock that moves only when told to.
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    pub fn set(&self, t: Timestamp) {
        self.now.send_replace(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_set() {
        let m = ManualClock::new("2026-11-24T00:00:00Z".parse().unwrap());
        let clock = Clock::Manual(m.clone());
        let target: Timestamp = "2026-11-24T01:00:00Z".parse().unwrap();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(target).await }
        });
        m.set("2026-11-24T00:30:00Z".parse().unwrap());
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        m.set(target);
        sleeper.await.unwrap();
        assert_eq!(clock.now(), target);
    }
}
