//! Device drivers: log in to one device over SSH and run one upgrade step at a time.
//!
//! - [`parse`]: pure parsers of the outputs (tested on real captures); `members`: those of
//!   stack members and supervisors (`show switch`, `show redundancy`, `show module`);
//! - [`cli`]: the pure prompt/dialog state machine;
//! - [`ssh`]: the only I/O, a russh client feeding the state machine;
//! - [`driver`]: [`Driver`], how each platform spells a step (pure command builders);
//! - [`copy`]: the copy sources (protocol, server, VRF, source interface), their commands and
//!   which failures are the transport's;
//! - [`session`]: [`Session`], the steps of an upgrade on a logged-in device;
//! - [`issu`]: what NX-OS's compatibility check and IOS-XE's ISSU state and activation say
//!   about an in-service upgrade ([`IssuCheck`]);
//! - [`target`], [`timeouts`], [`error`]: the device, how long waits may take, what fails;
//! - [`restart`] and [`wait`]: what proves a restart, and waiting for a device to come back;
//! - [`upgrade`]: the single-device procedure with its safety rules; [`rules`]: its pure
//!   decisions (failure reason, downgrade, post-check);
//! - [`state`]: pre/post state comparison (`checks.compare`): commands, parsers of their
//!   outputs, the comparison of before and after;
//! - [`scp_push`]: copy an image to a device over its own SCP server (`ip scp server enable`);
//! - [`version`]: Cisco version order (`15.2(7)E8` < `15.2(7)E10`), for the downgrade guard.
//!
//! Drivers know nothing of waves, retries or the database: the caller persists host keys and
//! facts, and decides what to do with a failure.

pub(crate) mod cli;
mod copy;
mod driver;
mod error;
pub mod issu;
pub(crate) mod members;
pub(crate) mod parse;
mod restart;
mod rules;
pub mod scp_push;
mod session;
pub(crate) mod ssh;
pub(crate) mod state;
mod target;
mod timeouts;
pub(crate) mod transcript;
pub mod upgrade;
pub(crate) mod version;
mod wait;

pub use copy::{CopySource, PushProgress, Transfer};
pub use driver::{Driver, file_name};
pub use error::DeviceError;
pub use issu::IssuCheck;
pub use restart::RestartEvidence;
pub use session::Session;
pub(crate) use session::{DeviceFacts, FilePresence};
pub use target::Target;
pub use timeouts::Timeouts;
pub use transcript::EntryKind;
pub(crate) use transcript::{Transcript, TranscriptEntry, TranscriptLimits};
pub(crate) use upgrade::{Check, StepGate, Stop, upgrade_gated};
pub use upgrade::{
    FailureReason, Issu, KickstartImage, ReloadSeen, Resumed, Step, StepEvent, StepStatus,
    UnsavedConfig, UpgradeFailure, UpgradeOptions, UpgradeOutcome, UpgradePlan, UpgradeResult,
    resume_after_reload, resume_rollback, upgrade,
};
pub use wait::{facts, wait_back};
pub(crate) use wait::{read_facts, wait_back_watched};
