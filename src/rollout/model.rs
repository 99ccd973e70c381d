//! What a rollout is made of, as stored and as shown.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
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
        Scheduled => "scheduled",
        Running => "running",
        Paused => "paused",
        Halted => "halted",
        Completed => "completed",
        Failed => "failed",
        Aborted => "aborted",
    }
);

impl RolloutState {
    /// A rollout in one of these states will do nothing more.
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            RolloutState::Completed | RolloutState::Failed | RolloutState::Aborted
        )
    }
}

string_enum!(
    /// Life of one device within a rollout.
    JobState {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
        Aborted => "aborted",
    }
);

impl JobState {
    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
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
pub trait Named: Sized + fmt::Display {
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
    pub fn known(&self) -> Option<T> {
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
pub fn is_reload_step(step: &str) -> bool {
    matches!(step, "reload" | "install")
}

// `S`, the state's type: the service's own `RolloutState`, or in a client `StateName`, which
// also keeps a state name of a newer service. (A plain comment: doc comments become the
// OpenAPI description.)
/// A rollout as stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutRecord<S = RolloutState> {
    pub id: String,
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
}

// `S` as in `RolloutRecord`.
/// One device's part in a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    pub attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// One line of a rollout's history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: i64,
    pub rollout_id: String,
    pub at: String,
    pub device: Option<String>,
    pub kind: String,
    pub step: Option<String>,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}
