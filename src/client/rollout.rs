//! `fleetup rollout …`: list, show, steer and report rollouts of a running service.

use std::fmt::Write as _;

use crate::api::{ActionResult, DeviceRow, WaveView};
use crate::rollout::model::{JobState, RolloutState, StateName};
use crate::rollout::report::Report;

use super::{Client, ClientError, Rollout, Rollouts, segment};

/// A wave as the CLI names it everywhere: `canary`, then `wave 1`, `wave 2`, … The service
/// numbers waves from 0 (`index`), and 0 is the canary only when the playbook has one.
pub fn wave_label(index: usize, has_canary: bool) -> String {
    match (has_canary, index) {
        (true, 0) => "canary".to_string(),
        (true, i) => format!("wave {i}"),
        (false, i) => format!("wave {}", i + 1),
    }
}

/// Whether the rollout's first wave is a canary (the planner names it so).
pub fn has_canary<J>(waves: &[WaveView<J>]) -> bool {
    waves
        .first()
        .is_some_and(|w| w.index == 0 && w.name == "canary")
}

/// Whether a rollout in this state will do nothing more by itself: ended, or halted (waiting
/// for a retry or an abort). A state this build does not know counts as ended once the
/// service gave the rollout an end time.
pub(crate) fn stopped(state: &StateName<RolloutState>, finished_at: Option<&str>) -> bool {
    match state.known() {
        Some(s) => s.is_ended() || s == RolloutState::Halted,
        None => finished_at.is_some(),
    }
}

/// Every targeted device ended upgraded or already current.
pub fn all_upgraded(r: &Rollout) -> bool {
    let p = &r.progress;
    r.rollout.state == RolloutState::Completed && p.total == p.succeeded + p.skipped
}

fn time_of(at: Option<&str>) -> String {
    // RFC 3339 from the service: keep date and time to the second, drop the rest.
    at.map(|t| t.get(..19).unwrap_or(t).replace('T', " "))
        .unwrap_or_else(|| "-".to_string())
}

/// `fleetup rollout list`.
pub fn list_text(list: &Rollouts) -> String {
    let mut out = format!(
        "{:<24} {:<20} {:<12} {:>15}  STARTED\n",
        "ID", "NAME", "STATE", "DONE/FAILED/ALL"
    );
    for r in &list.rollouts {
        let p = &r.progress;
        let counts = format!("{}/{}/{}", p.succeeded + p.skipped, p.failed, p.total);
        let _ = writeln!(
            out,
            "{:<24} {:<20} {:<12} {:>15}  {}",
            r.rollout.id,
            cut(&r.rollout.name, 20),
            r.rollout.state.to_string(),
            counts,
            time_of(r.rollout.started_at.as_deref())
        );
    }
    if list.rollouts.is_empty() {
        out.push_str("no rollouts yet\n");
    }
    out
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn device_line(d: &DeviceRow<StateName<JobState>>) -> String {
    let j = &d.job;
    let versions = format!(
        "{} -> {}",
        j.old_version.as_deref().unwrap_or("?"),
        j.new_version
            .as_deref()
            .or(j.target_version.as_deref())
            .unwrap_or("?")
    );
    let mut line = format!(
        "    {:<24} {:<10} {}",
        j.device,
        j.state.to_string(),
        versions
    );
    if j.state == JobState::Running {
        let _ = write!(line, "  ({})", super::follow::doing_words(j));
    }
    line
}

/// `fleetup rollout show`: state, each wave with its devices, errors and what to do next.
pub fn show_text(r: &Rollout) -> String {
    let rec = &r.rollout;
    let p = &r.progress;
    let mut out = format!(
        "rollout {} ({})\n  state    {}",
        rec.id, rec.name, rec.state
    );
    if let Some(reason) = &rec.halt_reason {
        let _ = write!(out, ": {reason}");
    }
    let _ = write!(
        out,
        "\n  started  {}\n  finished {}\n  devices  {} upgraded, {} current, {} failed{}, {} aborted, {} to go, of {}\n",
        time_of(rec.started_at.as_deref()),
        time_of(rec.finished_at.as_deref()),
        p.succeeded,
        p.skipped,
        p.failed,
        if p.rolled_back > 0 {
            format!(" ({} rolled back)", p.rolled_back)
        } else {
            String::new()
        },
        p.aborted,
        p.pending + p.running,
        p.total
    );
    out.push_str(&waves_text(r));
    out.push_str(&next_steps(r));
    out
}

/// Each wave with its devices, and each device's error.
pub fn waves_text(r: &Rollout) -> String {
    let mut out = String::new();
    let canary = has_canary(&r.waves);
    for w in &r.waves {
        let wp = &w.progress;
        let _ = writeln!(
            out,
            "  {}: {}/{} done, {} failed",
            wave_label(w.index, canary),
            wp.succeeded + wp.skipped,
            wp.total,
            wp.failed
        );
        for d in &w.devices {
            out.push_str(&device_line(d));
            out.push('\n');
            if let Some(e) = &d.job.error {
                let _ = writeln!(out, "      {e}");
            }
        }
    }
    out
}

/// What the operator can do next with this rollout, as commands.
pub fn next_steps(r: &Rollout) -> String {
    let id = &r.rollout.id;
    let mut out = String::new();
    if r.progress.failed > 0 {
        let _ = writeln!(
            out,
            "  fix the cause of the failures above, then put the failed devices back in line: fleetup rollout retry {id}"
        );
    }
    if r.rollout.state == RolloutState::Halted {
        let _ = writeln!(
            out,
            "  halted: `fleetup rollout retry {id}` goes on, `fleetup rollout abort {id}` ends it"
        );
    }
    out
}

/// `fleetup rollout report` as text: one line per device.
pub fn report_text(rep: &Report, has_canary: bool) -> String {
    let mut out = format!(
        "rollout {} ({}): {}\n  started {}, finished {}\n",
        rep.id,
        rep.name,
        rep.state,
        time_of(rep.started_at.as_deref()),
        time_of(rep.finished_at.as_deref())
    );
    let _ = writeln!(
        out,
        "  {:<24} {:<8} {:<10} {:<28} {:>7} {:>3}",
        "DEVICE", "WAVE", "RESULT", "VERSION", "SECONDS", "TRY"
    );
    for d in &rep.devices {
        let versions = format!(
            "{} -> {}",
            d.old_version.as_deref().unwrap_or("?"),
            d.new_version.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            out,
            "  {:<24} {:<8} {:<10} {:<28} {:>7} {:>3}",
            d.device,
            wave_label(d.wave, has_canary),
            d.result,
            versions,
            d.seconds.map(|s| format!("{s:.0}")).unwrap_or_default(),
            d.attempts
        );
        if let Some(e) = &d.error {
            let _ = writeln!(out, "      {e}");
        }
        for line in &d.compared {
            let _ = writeln!(out, "      {line}");
        }
    }
    out
}

/// The "configuration changes" section of `fleetup rollout report`: per device whose running
/// configuration was kept before and after, the diff (read from the configs endpoints, which
/// need the token; the report itself carries no configuration text). Devices without both
/// backups are left out; a refused read (no token) is said once.
pub async fn config_changes_text(c: &Client, rep: &Report) -> String {
    let mut out = String::new();
    for d in &rep.devices {
        let path = format!(
            "/devices/{}/configs/diff/{}",
            segment(&d.device),
            segment(&rep.id)
        );
        match c.get_json::<crate::api::ConfigDiffView>(&path).await {
            Ok(diff) => {
                for line in super::configs::diff_text(&d.device, &diff).lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
            Err(ClientError::Api { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => {}
            Err(e) => {
                let _ = writeln!(out, "    (configuration diffs not shown: {e})");
                break;
            }
        }
    }
    if out.is_empty() {
        return out;
    }
    format!("  configuration changes (running configuration before -> after):\n{out}")
}

/// The rollout actions of `fleetup rollout`.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Pause,
    Resume,
    Abort,
    Retry,
    /// A rollout waiting in `awaiting_approval`: approved by this token (not the submitter's).
    Approve,
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Abort => "abort",
            Action::Retry => "retry",
            Action::Approve => "approve",
        }
    }
}

/// Pause, resume, abort or retry; the line to print.
pub async fn act(c: &Client, id: &str, action: Action) -> Result<String, ClientError> {
    let r: ActionResult = c
        .post(&format!("/rollouts/{}/{}", segment(id), action.path()))
        .await?;
    let mut line = format!("rollout {}: {} (now {})", r.id, r.message, r.state);
    match action {
        Action::Abort => {}
        _ => {
            let _ = write!(line, "\n  follow it: fleetup follow {}", r.id);
        }
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_are_named_one_way() {
        assert_eq!(wave_label(0, true), "canary");
        assert_eq!(wave_label(1, true), "wave 1");
        assert_eq!(wave_label(2, true), "wave 2");
        assert_eq!(wave_label(0, false), "wave 1");
        assert_eq!(wave_label(1, false), "wave 2");
    }

    #[test]
    fn an_unknown_state_is_kept_and_ends_with_an_end_time() {
        let s: StateName<RolloutState> = serde_json::from_str("\"completed_with_flair\"").unwrap();
        assert_eq!(s.to_string(), "completed_with_flair");
        assert!(!stopped(&s, None));
        assert!(stopped(&s, Some("2026-11-24T12:51:55Z")));
        let s: StateName<RolloutState> = serde_json::from_str("\"halted\"").unwrap();
        assert_eq!(s, RolloutState::Halted);
        assert!(stopped(&s, None));
    }
}
