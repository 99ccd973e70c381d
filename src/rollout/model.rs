//! What a rollout is made of, as stored and as shown.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Named for $name {
            fn parse_name(s: &str) -> Option<Self> {
                Self::parse(s)
            }
        }
    };
}

string_enum!(
    /// Life of a rollout.
    RolloutState {
        /// Submitted with `approval: required`: nothing starts until another operator or admin
        /// token approves it.
        AwaitingApproval => "awaiting_approval",
        Scheduled => "scheduled",
        Running => "running",
        Paused => "paused",
        /// Stopped by the canary, `max_failures` or a fault: open for retry or abort.
        Halted => "halted",
        /// Every targeted device upgraded (or already current).
        Completed => "completed",
        /// Every device done, some failed, fewer than `max_failures` allowed to halt.
        CompletedWithFailures => "completed_with_failures",
        Aborted => "aborted",
    }
);

impl RolloutState {
    /// A rollout in one of these states will do nothing more unless failed devices are retried.
    pub(crate) fn is_ended(self) -> bool {
        matches!(
            self,
            RolloutState::Completed | RolloutState::CompletedWithFailures | RolloutState::Aborted
        )
    }

    /// Whether failed devices may be put back in line.
    pub(crate) fn may_retry(self) -> bool {
        !matches!(self, RolloutState::Completed | RolloutState::Aborted)
    }
}

string_enum!(
    /// Life of one device within a rollout.
    JobState {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        /// Failed on the new image and put back on the old one (`options.rollback`, or the
        /// IOS-XE installer's auto-abort): counts as a failure.
        RolledBack => "rolled_back",
        Skipped => "skipped",
        Aborted => "aborted",
    }
);

impl JobState {
    pub(crate) fn is_finished(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }
}

string_enum!(
    /// What a rollout event says. One vocabulary from the driver's step events through the
    /// store, the report, the SSE event names, OpenAPI and the dashboard.
    EventKind {
        Created => "created",
        /// The rollout waits for a second person's approval (its plan in the event's data).
        AwaitingApproval => "awaiting_approval",
        Approved => "approved",
        Scheduled => "scheduled",
        Started => "started",
        Paused => "paused",
        Resumed => "resumed",
        AbortRequested => "abort_requested",
        Aborted => "aborted",
        Retry => "retry",
        Halted => "halted",
        Completed => "completed",
        CompletedWithFailures => "completed_with_failures",
        WaveStarted => "wave_started",
        WaveFinished => "wave_finished",
        Skipped => "skipped",
        StepStarted => "step_started",
        StepDone => "step_done",
        StepSkipped => "step_skipped",
        StepFailed => "step_failed",
        DeviceSucceeded => "device_succeeded",
        DeviceFailed => "device_failed",
        DeviceRolledBack => "device_rolled_back",
        DeviceAborted => "device_aborted",
        DeviceRequeued => "device_requeued",
        Held => "held",
        WaitingWindow => "waiting_window",
        WindowOpened => "window_opened",
        ReloadNotSent => "reload_not_sent",
        FactsRead => "facts_read",
        /// Anything else; a client reads a kind it does not know (from a newer service) so.
        #[serde(other)]
        Message => "message",
    }
);

impl EventKind {
    /// Something went wrong: shown in red, counted by the activity filter.
    pub(crate) fn is_bad(self) -> bool {
        matches!(
            self,
            EventKind::StepFailed
                | EventKind::DeviceFailed
                | EventKind::DeviceRolledBack
                | EventKind::DeviceAborted
                | EventKind::Halted
                | EventKind::Aborted
                | EventKind::CompletedWithFailures
                | EventKind::ReloadNotSent
        )
    }

    /// About the whole rollout: read out to screen readers and shown in the terminal.
    pub(crate) fn is_rollout_wide(self) -> bool {
        matches!(
            self,
            EventKind::Started
                | EventKind::Paused
                | EventKind::Resumed
                | EventKind::AbortRequested
                | EventKind::Aborted
                | EventKind::Halted
                | EventKind::Completed
                | EventKind::CompletedWithFailures
                | EventKind::WaveStarted
                | EventKind::WaveFinished
                | EventKind::Retry
        )
    }

    /// The event that records how a driver step ended.
    pub(crate) fn of_step(status: crate::device::StepStatus) -> EventKind {
        use crate::device::StepStatus;
        match status {
            StepStatus::Started => EventKind::StepStarted,
            StepStatus::Done => EventKind::StepDone,
            StepStatus::Skipped => EventKind::StepSkipped,
            StepStatus::Failed => EventKind::StepFailed,
        }
    }

    /// A kind as stored; an unknown one (written by a newer release) reads as a message. (The
    /// old rollout-level `failed` was renamed by a migration.)
    pub(crate) fn from_stored(s: &str) -> EventKind {
        Self::parse(s).unwrap_or(EventKind::Message)
    }
}

string_enum!(
    /// Whether a device's recorded step is under way or finished.
    StepState {
        Started => "started",
        Done => "done",
    }
);

/// A state enum that can be read back from its name.
pub(crate) trait Named: Sized + fmt::Display {
    fn parse_name(s: &str) -> Option<Self>;
}

/// A state as a client reads it from the service: one this build knows, or a name from a newer
/// service, kept as sent so that it can still be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateName<T> {
    Known(T),
    Other(String),
}

impl<T: Copy> StateName<T> {
    pub(crate) fn known(&self) -> Option<T> {
        match self {
            StateName::Known(t) => Some(*t),
            StateName::Other(_) => None,
        }
    }
}

impl<T: PartialEq> PartialEq<T> for StateName<T> {
    fn eq(&self, other: &T) -> bool {
        matches!(self, StateName::Known(t) if t == other)
    }
}

impl<T: fmt::Display> fmt::Display for StateName<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateName::Known(t) => t.fmt(f),
            StateName::Other(s) => f.write_str(s),
        }
    }
}

impl<T: fmt::Display> Serialize for StateName<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, T: Named> Deserialize<'de> for StateName<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match T::parse_name(&s) {
            Some(t) => StateName::Known(t),
            None => StateName::Other(s),
        })
    }
}

/// Whether starting `step` sends the reload: IOS reloads on `reload`; the IOS-XE and NX-OS
/// installers reload by themselves (`install`).
pub(crate) fn is_reload_step(step: &str) -> bool {
    matches!(step, "reload" | "install")
}

/// A rollout's id, `r-20261124-013000-4f2a`: made by the engine, carried by the store, the
/// transfers a rollout's jobs claim, the API and the CLI.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct RolloutId(String);

impl RolloutId {
    /// An id as stored or sent: anything the store may hold (older ids included).
    pub fn new(id: impl Into<String>) -> RolloutId {
        RolloutId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RolloutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for RolloutId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RolloutId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RolloutId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

// `S`, the state's type: the service's own `RolloutState`, or in a client `StateName`, which
// also keeps a state name of a newer service. (A plain comment: doc comments become the
// OpenAPI description.)
/// A rollout as stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutRecord<S = RolloutState> {
    pub id: RolloutId,
    pub name: String,
    #[schema(value_type = RolloutState)]
    pub state: S,
    /// The playbook as submitted (YAML or JSON text).
    #[serde(skip)]
    pub playbook: String,
    #[serde(skip)]
    pub plan_json: String,
    pub images: Vec<String>,
    pub paused: bool,
    pub abort_requested: bool,
    pub halt_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The name of the token that submitted it (none for rollouts from before tokens had
    /// names, and the demo's).
    pub submitted_by: Option<String>,
    /// Submitted with `approval: required` (or under the service's `--approval required`).
    #[serde(default)]
    pub approval_required: bool,
    /// The token that approved it: never the submitter.
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
}

// `S` as in `RolloutRecord`.
/// One device's part in a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceJob<S = JobState> {
    pub device: String,
    pub wave: usize,
    pub position: usize,
    pub image: String,
    pub target_version: Option<String>,
    #[schema(value_type = JobState)]
    pub state: S,
    /// The driver's step name (`connect`, `copy`, `reload`, ...).
    pub step: Option<String>,
    pub step_state: Option<StepState>,
    pub old_version: Option<String>,
    pub old_image: Option<String>,
    pub new_version: Option<String>,
    pub error: Option<String>,
    /// Once true, the device is never sent another reload by this rollout.
    pub reload_sent: bool,
    /// Once true, the device's rollback reload was recorded: it is never sent again.
    #[serde(default)]
    pub rollback_sent: bool,
    /// Staged and held for the maintenance window opening then (in the window's zone and UTC).
    pub waits_for_window: Option<String>,
    pub attempts: u32,
    /// The site whose agents the job was handed to (`fleetup agent`); none when a serve node
    /// runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_site: Option<String>,
    /// The agent that claimed it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// A rollout that included a device, with the device's job in it.
#[derive(Debug, Clone)]
pub(crate) struct DeviceRollout {
    pub rollout_id: RolloutId,
    pub rollout_name: String,
    pub rollout_state: RolloutState,
    pub rollout_created_at: String,
    pub job: DeviceJob,
}

/// One kept line of a job's transcript (already redacted by the driver).
#[derive(Debug, Clone)]
pub(crate) struct TranscriptLine {
    pub attempt: u32,
    pub step: Option<String>,
    pub kind: crate::device::EntryKind,
    pub command: String,
    pub output: String,
    pub at: String,
}

/// One line of a rollout's history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: i64,
    pub rollout_id: RolloutId,
    pub at: String,
    pub device: Option<String>,
    pub kind: EventKind,
    pub step: Option<String>,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_reads_an_event_kind_it_does_not_know_as_a_message() {
        let kind: EventKind = serde_json::from_str("\"reload_not_sent\"").unwrap();
        assert_eq!(kind, EventKind::ReloadNotSent);
        let newer: EventKind = serde_json::from_str("\"rolled_back\"").unwrap();
        assert_eq!(newer, EventKind::Message);
        // Every kind reads back as itself.
        for k in EventKind::ALL {
            let text = serde_json::to_string(k).unwrap();
            assert_eq!(serde_json::from_str::<EventKind>(&text).unwrap(), *k);
        }
    }
}
