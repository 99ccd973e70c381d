//! Webhook notifications: what a rollout's events are worth telling a chat channel or another
//! system, to which webhooks (service-wide in the config file, per playbook under `notify:`),
//! in which format (generic JSON, Slack, Microsoft Teams), signed with HMAC-SHA256.
//!
//! `target` reads the targets (URLs checked where they are written); `payload` builds the
//! bodies and signatures and decides retries, pure; `deliver` is the one part with sockets:
//! the `Notifier` task, subscribed to the rollouts' live events. The engine never waits for
//! it: it only publishes its events, the notifier queues deliveries in a bounded queue and
//! drops (and counts) what does not fit.

mod deliver;
mod payload;
mod target;

pub use deliver::read_ca_file;
pub(crate) use deliver::{NotifySettings, start};
pub use deliver::{NotifyStats, StatsSnapshot};
pub use target::check_usable;
pub use target::{Format, Target, WebhookUrl, targets_from_yaml};

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a notification is about. `awaiting_approval` is part of the vocabulary for targets to
/// subscribe to, but no rollout waits for an approval yet: nothing sends it today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The rollout began its work (submitted without a start time, or after it).
    RolloutStarted,
    /// A rollout that waited for `schedule.start_at` reached it and started.
    ScheduleReached,
    /// A wave ended and the next one may start.
    WaveDone,
    /// The rollout stopped (canary, `max_failures`, a fault): retry or abort.
    Halted,
    DeviceFailed,
    /// A device failed on the new image and was put back on the old one.
    DeviceRolledBack,
    /// A rollout submitted with `approval: required` waits for another operator's approval
    /// (the plan in the payload's `data`).
    AwaitingApproval,
    /// The rollout ended: completed, completed with failures, or aborted.
    Finished,
}

impl NotificationKind {
    pub const ALL: &'static [NotificationKind] = &[
        NotificationKind::RolloutStarted,
        NotificationKind::ScheduleReached,
        NotificationKind::WaveDone,
        NotificationKind::Halted,
        NotificationKind::DeviceFailed,
        NotificationKind::DeviceRolledBack,
        NotificationKind::AwaitingApproval,
        NotificationKind::Finished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::RolloutStarted => "rollout_started",
            NotificationKind::ScheduleReached => "schedule_reached",
            NotificationKind::WaveDone => "wave_done",
            NotificationKind::Halted => "halted",
            NotificationKind::DeviceFailed => "device_failed",
            NotificationKind::DeviceRolledBack => "device_rolled_back",
            NotificationKind::AwaitingApproval => "awaiting_approval",
            NotificationKind::Finished => "finished",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<NotificationKind> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Queued, being sent, or waiting for its next attempt.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed, the receiver refused it (4xx), or it was dropped.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One delivery as recorded: its target's URL is kept redacted ([`WebhookUrl::redacted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeliveryRecord {
    pub id: i64,
    pub rollout_id: String,
    pub event_id: i64,
    pub target: String,
    pub format: Format,
    pub kind: NotificationKind,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub state: DeliveryState,
    pub created_at: String,
    pub updated_at: String,
}
