//! The `Notifier`: the one part of `notify` with sockets. A task reads the rollouts' live
//! events, turns those worth it into deliveries (recorded `pending`), and puts them in a
//! bounded queue; a dispatcher sends them, a few at a time, each with its retries. Nothing
//! here is awaited by the engine: when the queue is full a delivery is dropped and counted;
//! when this task falls behind the event channel, the events it missed are counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, mpsc};

use super::payload::{self, Attempt, Next, Notification};
use super::{DeliveryState, NotificationKind, Target};
use crate::rollout::model::Event;
use crate::shutdown::Shutdown;
use crate::store::{Db, NewDelivery};

/// How the notifier works.
#[derive(Debug, Clone)]
pub(crate) struct NotifySettings {
    /// Service-wide targets (the config file's `notify:`), besides each playbook's own.
    pub targets: Vec<Target>,
    /// Attempts per delivery, the first included.
    pub attempts: u32,
    /// The delay before the first retry; each next one doubles.
    pub first_retry: Duration,
    /// How long one attempt may take, connection and answer included.
    pub timeout: Duration,
    /// Deliveries waiting to be sent; beyond it new ones are dropped.
    pub queue: usize,
    /// Deliveries being sent (or waiting to retry) at once.
    pub concurrency: usize,
    /// Rows of history kept.
    pub keep: u32,
    /// Certificate authorities trusted for https targets besides the system's
    /// (`--notify-ca`).
    pub extra_roots: Vec<reqwest::Certificate>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            targets: Vec::new(),
            attempts: 5,
            first_retry: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            queue: 1024,
            concurrency: 16,
            keep: 10_000,
            extra_roots: Vec::new(),
        }
    }
}

/// Counters of deliveries by result, for `/metrics`; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct NotifyStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retried: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub delivered: u64,
    pub failed: u64,
    /// Not sent: the queue was full, or the notifier fell behind the events.
    pub dropped: u64,
    /// Attempts that were followed by another.
    pub retried: u64,
}

impl NotifyStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &self.0;
        StatsSnapshot {
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One delivery, ready to be sent.
struct Delivery {
    id: i64,
    url: reqwest::Url,
    kind: NotificationKind,
    body: Vec<u8>,
    /// `X-Fleetup-Signature`, when the target has a secret.
    signature: Option<String>,
}

/// The certificates of a PEM file (`--notify-ca`): at least one, or why not.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it (PEM, -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// Start the notifier on the rollouts' live events.
pub(crate) fn start(
    db: Db,
    events: broadcast::Receiver<Event>,
    settings: NotifySettings,
    shutdown: Shutdown,
) -> NotifyStats {
    let stats = NotifyStats::default();
    let client = match crate::http_client::builder()
        .tls_certs_merge(settings.extra_roots.iter().cloned())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fleetup/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client: no notification will be sent");
            return stats;
        }
    };
    let (queue, queued) = mpsc::channel(settings.queue.max(1));
    let settings = Arc::new(settings);
    let router = Router {
        db: db.clone(),
        settings: settings.clone(),
        stats: stats.clone(),
        queue,
        rollouts: HashMap::new(),
    };
    shutdown.tasks.spawn(router.run(events, shutdown.clone()));
    let dispatcher = Dispatcher {
        db,
        settings,
        stats: stats.clone(),
        client,
    };
    shutdown
        .tasks
        .spawn(dispatcher.run(queued, shutdown.clone()));
    stats
}

/// The error of a delivery still pending when the service stopped, failed at the next start.
const ABANDONED: &str =
    "fleetup stopped before this delivery ended; it is not sent again after the restart";

/// Turns events into queued deliveries.
struct Router {
    db: Db,
    settings: Arc<NotifySettings>,
    stats: NotifyStats,
    queue: mpsc::Sender<Delivery>,
    /// Each running rollout's name and playbook targets, read once.
    rollouts: HashMap<String, Arc<(String, Vec<Target>)>>,
}

impl Router {
    async fn run(mut self, mut events: broadcast::Receiver<Event>, shutdown: Shutdown) {
        // Not sent again: the body is not kept, the news may be stale by now (a halt long
        // since retried), and an attempt cut short may have reached the receiver already.
        match self.db.abandon_pending_deliveries(ABANDONED).await {
            Ok(0) => {}
            Ok(n) => {
                NotifyStats::add(&self.stats.0.failed, n);
                tracing::warn!(n, "webhook deliveries left pending by the last run failed");
            }
            Err(e) => tracing::warn!(error = %e, "cannot close the last run's webhook deliveries"),
        }
        loop {
            let ev = tokio::select! {
                _ = shutdown.requested() => return,
                ev = events.recv() => ev,
            };
            match ev {
                Ok(ev) => self.route(&ev).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    NotifyStats::add(&self.stats.0.dropped, n);
                    tracing::warn!(
                        missed = n,
                        "the notifier fell behind the rollout events; their notifications are lost"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn route(&mut self, ev: &Event) {
        let Some(kind) = payload::kind_of(ev) else {
            return;
        };
        let Some(rollout) = self.rollout(ev.rollout_id.as_str()).await else {
            return;
        };
        if kind == NotificationKind::Finished {
            self.rollouts.remove(ev.rollout_id.as_str());
        }
        let (name, own) = &*rollout;
        let notification = Notification::of(ev, kind, name);
        for target in self
            .settings
            .targets
            .iter()
            .chain(own)
            .filter(|t| t.wants(kind))
        {
            self.queue_one(ev, &notification, target).await;
        }
    }

    /// A rollout's name and its playbook's targets.
    async fn rollout(&mut self, id: &str) -> Option<Arc<(String, Vec<Target>)>> {
        if let Some(r) = self.rollouts.get(id) {
            return Some(r.clone());
        }
        let record = match self.db.rollout(id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(rollout = id, error = %e, "cannot read the rollout to notify about it");
                return None;
            }
        };
        // The stored playbook parsed when it was submitted; one that no longer does (a newer
        // release's) notifies only the service-wide targets.
        let own = crate::playbook::parse(&record.playbook)
            .map(|pb| pb.notify)
            .unwrap_or_default();
        if self.rollouts.len() >= 256 {
            self.rollouts.clear();
        }
        let r = Arc::new((record.name, own));
        self.rollouts.insert(id.to_string(), r.clone());
        Some(r)
    }

    async fn queue_one(&self, ev: &Event, n: &Notification, target: &Target) {
        let target_text = target.url.value.redacted();
        let record = NewDelivery {
            rollout_id: ev.rollout_id.as_str(),
            event_id: ev.id,
            target: &target_text,
            format: target.format,
            kind: n.kind,
        };
        let id = match self.db.insert_delivery(&record, self.settings.keep).await {
            Ok(id) => id,
            Err(e) => {
                NotifyStats::add(&self.stats.0.dropped, 1);
                tracing::warn!(target = %target_text, error = %e, "cannot record a webhook delivery; not sent");
                return;
            }
        };
        let body = payload::body(target.format, n);
        let signature = match target.secret() {
            Ok(secret) => secret.map(|s| payload::signature(&s, &body)),
            Err(why) => {
                self.end(id, 0, None, &why, false).await;
                return;
            }
        };
        let delivery = Delivery {
            id,
            url: target.url.value.url().clone(),
            kind: n.kind,
            body,
            signature,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(delivery) {
            let why = "dropped: the delivery queue is full (receivers too slow or down)";
            self.end(id, 0, None, why, true).await;
        }
    }

    /// A delivery that never left: failed (or dropped) with `why`.
    async fn end(&self, id: i64, attempts: u32, status: Option<u16>, why: &str, dropped: bool) {
        let counter = if dropped {
            &self.stats.0.dropped
        } else {
            &self.stats.0.failed
        };
        NotifyStats::add(counter, 1);
        tracing::warn!(delivery = id, "{why}");
        if let Err(e) = self
            .db
            .update_delivery(id, attempts, status, Some(why), DeliveryState::Failed)
            .await
        {
            tracing::warn!(delivery = id, error = %e, "cannot record a webhook delivery's end");
        }
    }
}

/// Sends queued deliveries, `concurrency` at a time.
struct Dispatcher {
    db: Db,
    settings: Arc<NotifySettings>,
    stats: NotifyStats,
    client: reqwest::Client,
}

impl Dispatcher {
    async fn run(self, mut queued: mpsc::Receiver<Delivery>, shutdown: Shutdown) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let this = Arc::new(self);
        loop {
            let delivery = tokio::select! {
                _ = shutdown.requested() => return,
                d = queued.recv() => match d {
                    Some(d) => d,
                    None => return,
                },
            };
            let slot = tokio::select! {
                _ = shutdown.requested() => return,
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
            };
            let (this, s) = (this.clone(), shutdown.clone());
            shutdown.tasks.spawn(async move {
                let _slot = slot;
                tokio::select! {
                    _ = s.requested() => {}
                    _ = this.deliver(&delivery) => {}
                }
            });
        }
    }

    /// Every attempt of one delivery, recorded after each.
    async fn deliver(&self, d: &Delivery) {
        let attempts = self.settings.attempts.max(1);
        for attempt in 1..=attempts {
            let outcome = self.attempt(d).await;
            let (status, error) = match &outcome {
                Attempt::Status(s) => (
                    Some(*s),
                    (!(200..300).contains(s)).then(|| format!("the receiver answered HTTP {s}")),
                ),
                Attempt::NoAnswer(why) => (None, Some(why.clone())),
            };
            let next = payload::after(attempt, attempts, &outcome, self.settings.first_retry);
            let state = match next {
                Next::Delivered => DeliveryState::Delivered,
                Next::Retry(_) => DeliveryState::Pending,
                Next::Failed => DeliveryState::Failed,
            };
            if let Err(e) = self
                .db
                .update_delivery(d.id, attempt, status, error.as_deref(), state)
                .await
            {
                tracing::warn!(delivery = d.id, error = %e, "cannot record a webhook attempt");
            }
            match next {
                Next::Delivered => {
                    NotifyStats::add(&self.stats.0.delivered, 1);
                    return;
                }
                Next::Failed => {
                    NotifyStats::add(&self.stats.0.failed, 1);
                    tracing::warn!(
                        delivery = d.id,
                        attempts = attempt,
                        error = error.as_deref().unwrap_or(""),
                        "webhook delivery failed"
                    );
                    return;
                }
                Next::Retry(delay) => {
                    NotifyStats::add(&self.stats.0.retried, 1);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, d: &Delivery) -> Attempt {
        let mut req = self
            .client
            .post(d.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Fleetup-Event", d.kind.as_str())
            .header("X-Fleetup-Delivery", d.id.to_string())
            .body(d.body.clone());
        if let Some(sig) = &d.signature {
            req = req.header("X-Fleetup-Signature", sig);
        }
        match req.send().await {
            Ok(resp) => Attempt::Status(resp.status().as_u16()),
            // Without the URL: it may hold the webhook's secret.
            Err(e) if e.is_timeout() => Attempt::NoAnswer(format!(
                "no answer within {} s",
                self.settings.timeout.as_secs_f32()
            )),
            Err(e) => Attempt::NoAnswer(crate::http_client::error_chain(&e.without_url())),
        }
    }
}
