//! `fleetup run` / `follow` / `upgrade`: follow a rollout in the terminal until it ends.
//!
//! On a terminal, a block redrawn in place: a line for the rollout (state, ETA), a header per
//! wave, a line per running device (its step, and for a copy its % and rate), and the totals,
//! each line at most 80 columns. Above it, one line per device as it finishes. `--verbose`
//! adds the service's event stream; `--json` gives only the events, one JSON object a line.
//! Ctrl-C detaches: the rollout goes on in the service.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::rollout::{has_canary, stopped, wave_label};
use super::{Client, ClientError, Rollout, segment};
use crate::rollout::model::{Event, JobState};
use crate::transfers::TransferState;

/// The widest line the display draws, whatever the terminal's width.
pub(crate) const MAX_WIDTH: usize = 80;

/// How following a rollout ended.
pub enum Outcome {
    /// The rollout ended or halted; its final view.
    Stopped(Box<Rollout>),
    /// Ctrl-C: the CLI let go, the rollout goes on in the service.
    Detached,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// One JSON event per line on stdout, nothing drawn.
    pub json: bool,
    /// The event stream above the display.
    pub verbose: bool,
}

/// Read the server-sent events of a rollout and pass each event on.
async fn read_events(client: Client, id: String, tx: tokio::sync::mpsc::UnboundedSender<Event>) {
    let url = client.url(&format!("/rollouts/{}/events", segment(&id)));
    let mut rb = client.http.get(url).header("accept", "text/event-stream");
    if let Some(t) = &client.token {
        rb = rb.bearer_auth(t);
    }
    let Ok(resp) = rb.send().await else { return };
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect::<Vec<_>>()
                .join("\n");
            // Keep-alive comments and `lagged` carry no event; the next poll catches up.
            if let Ok(ev) = serde_json::from_str::<Event>(&data)
                && tx.send(ev).is_err()
            {
                return;
            }
        }
    }
}

/// What a running device is doing, in the operator's words: its step, or, staged before its
/// maintenance window, when the window opens.
pub(crate) fn doing_words<S>(job: &crate::rollout::model::DeviceJob<S>) -> String {
    match (&job.waits_for_window, job.step.as_deref()) {
        (Some(opens), _) => format!("staged (waits for window {opens})"),
        (None, Some(step)) => step_words(step),
        (None, None) => "starting".to_string(),
    }
}

/// A step in the operator's words.
pub(crate) fn step_words(step: &str) -> String {
    match step {
        "connect" => "connecting",
        "facts" => "reading the version",
        "file_present" => "looking for the image",
        "free_space" => "checking flash space",
        "copy" => "copying",
        "verify_md5" => "verifying MD5",
        "set_boot" => "setting boot",
        "save" => "saving config",
        "reload" => "reloading",
        "install" => "installing",
        "wait_back" => "waiting to come back",
        "post_check" => "checking",
        "cleanup" => "cleaning up",
        "config_backup" => "backing up the configuration",
        "restore_boot" => "restoring boot",
        other => return other.replace('_', " "),
    }
    .to_string()
}

fn event_line(ev: &Event) -> String {
    let time = ev.at.get(11..19).unwrap_or(&ev.at);
    let device = ev
        .device
        .as_deref()
        .map(|d| format!("{d}: "))
        .unwrap_or_default();
    let step = ev
        .step
        .as_deref()
        .map(|s| format!("[{s}] "))
        .unwrap_or_default();
    format!("{time} {device}{step}{} {}", ev.kind, ev.message)
}

/// `s` cut to `width` columns (the display is ASCII but for names).
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

fn duration_words(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The time left, from the pace so far: the time since the start, per finished device, times
/// the devices left.
fn eta(r: &Rollout, now: jiff::Timestamp) -> Option<u64> {
    let p = &r.progress;
    let left = p.pending + p.running;
    let finished = p.total - left;
    if finished == 0 || left == 0 {
        return None;
    }
    let started: jiff::Timestamp = r.rollout.started_at.as_deref()?.parse().ok()?;
    let elapsed = started.duration_until(now).as_secs_f64().max(0.0);
    Some((elapsed / finished as f64 * left as f64).round() as u64)
}

/// The live display of rollout `r` at `now`: every line at most `width` columns.
pub(crate) fn render(r: &Rollout, now: jiff::Timestamp, width: usize) -> Vec<String> {
    let p = &r.progress;
    let mut lines = Vec::new();
    let eta = match eta(r, now) {
        Some(s) => format!("ETA {}", duration_words(s)),
        None if p.pending + p.running == 0 => String::new(),
        None => "ETA --".to_string(),
    };
    lines.push(format!(
        "rollout {}  {}  {eta}",
        r.rollout.id, r.rollout.state
    ));
    let canary = has_canary(&r.waves);
    for w in &r.waves {
        let wp = &w.progress;
        let label = wave_label(w.index, canary);
        let mut header = if wp.pending == wp.total {
            format!("{label}: {} device(s) waiting", wp.total)
        } else {
            format!("{label}: {}/{} done", wp.succeeded + wp.skipped, wp.total)
        };
        if wp.failed > 0 {
            let _ = write!(header, ", {} failed", wp.failed);
        }
        if wp.running > 0 {
            let _ = write!(header, ", {} running", wp.running);
        }
        lines.push(header);
        for d in w
            .devices
            .iter()
            .filter(|d| d.job.state == JobState::Running)
        {
            let step = d.job.step.as_deref().unwrap_or("starting");
            let mut line = format!("  {:<22} {}", fit(&d.job.device, 22), doing_words(&d.job));
            if step == "copy"
                && let Some(t) = d
                    .transfer
                    .as_ref()
                    .filter(|t| t.state == TransferState::Active)
            {
                let total = t.total.unwrap_or(0);
                let pct = t
                    .bytes
                    .saturating_mul(100)
                    .checked_div(total)
                    .map(|p| format!("{p:>3}%"))
                    .unwrap_or_default();
                let _ = write!(
                    line,
                    " {pct} {}/{} MB  {} MB/s",
                    megabytes(t.bytes),
                    megabytes(total),
                    megabytes(t.rate_bps)
                );
            }
            lines.push(line);
        }
    }
    lines.push(format!(
        "done {}  failed {}  remaining {}  of {}",
        p.succeeded + p.skipped,
        p.failed,
        p.pending + p.running,
        p.total
    ));
    let width = width.min(MAX_WIDTH);
    lines.iter().map(|l| fit(l.trim_end(), width)).collect()
}

/// The line printed once when a device finishes.
fn finished_line(d: &crate::api::DeviceRow<crate::rollout::model::StateName<JobState>>) -> String {
    let j = &d.job;
    let name = &j.device;
    match j.state.known() {
        Some(JobState::Succeeded) => format!(
            "{name}: upgraded {} -> {}",
            j.old_version.as_deref().unwrap_or("?"),
            j.new_version.as_deref().unwrap_or("?")
        ),
        Some(JobState::Skipped) => format!("{name}: already on the target version"),
        // A failure's error says what failed already ("verify_md5 failed (…): …").
        Some(JobState::Failed) => format!("{name}: {}", j.error.as_deref().unwrap_or("failed")),
        Some(JobState::RolledBack) => format!(
            "{name}: rolled back to {} ({})",
            j.old_version.as_deref().unwrap_or("the old image"),
            j.error.as_deref().unwrap_or("failed on the new image")
        ),
        _ => match &j.error {
            Some(e) => format!("{name}: {} ({e})", j.state),
            None => format!("{name}: {}", j.state),
        },
    }
}

fn terminal_width() -> usize {
    let width = console::Term::stderr().size_checked().map(|(_, w)| w);
    width.map_or(MAX_WIDTH, usize::from).min(MAX_WIDTH)
}

/// What to tell an operator who pressed Ctrl-C.
pub fn detach_text(id: &str) -> String {
    format!(
        "\ndetached from rollout {id}: it goes on in the service.\n  \
         follow it again:  fleetup follow {id}\n  \
         pause it:         fleetup rollout pause {id}\n  \
         abort it:         fleetup rollout abort {id}\n"
    )
}

/// Follow rollout `id` until it ends or halts, or until Ctrl-C detaches.
pub async fn follow(client: &Client, id: &str, opts: Options) -> Result<Outcome, ClientError> {
    // Listen for Ctrl-C first, so that it never kills the CLI mid-draw.
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| ClientError::Decode(format!("cannot listen for Ctrl-C: {e}")))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(read_events(client.clone(), id.to_string(), tx));
    let live = !opts.json && std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(
        None,
        if live {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let say = |line: &str| {
        if !opts.json {
            bar.suspend(|| eprintln!("{line}"));
        }
    };
    let show_event = |ev: &Event| {
        if opts.json {
            if let Ok(line) = serde_json::to_string(ev) {
                println!("{line}");
            }
        } else if opts.verbose {
            say(&event_line(ev));
        }
    };
    let mut reported: Option<HashSet<String>> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut events_open = true;
    let outcome = loop {
        tokio::select! {
            _ = interrupt.recv() => break Outcome::Detached,
            ev = rx.recv(), if events_open => {
                let Some(ev) = ev else {
                    // The event stream ended (service restarting?): polling goes on.
                    events_open = false;
                    continue;
                };
                show_event(&ev);
                // Device events show at the next poll; rollout events (an end) at once.
                if ev.device.is_some() {
                    continue;
                }
            }
            _ = tick.tick() => {}
        }
        let r = client.rollout(id).await?;
        let rows = r.waves.iter().flat_map(|w| &w.devices);
        match &mut reported {
            // Attaching: what had finished before is in the final summary, not repeated.
            None => {
                reported = Some(
                    rows.filter(|d| d.job.state.known().is_none_or(JobState::is_finished))
                        .map(|d| d.job.device.clone())
                        .collect(),
                );
            }
            Some(seen) => {
                for d in rows {
                    let finished = d.job.state.known().is_none_or(JobState::is_finished);
                    if finished && seen.insert(d.job.device.clone()) {
                        say(&finished_line(d));
                    }
                }
            }
        }
        if live {
            bar.set_message(render(&r, jiff::Timestamp::now(), terminal_width()).join("\n"));
        }
        if stopped(&r.rollout.state, r.rollout.finished_at.as_deref()) {
            // The stream may lag the poll: show the events up to the one of this end.
            if events_open && (opts.json || opts.verbose) {
                let end = r.rollout.state.to_string();
                let rest = async {
                    while let Some(ev) = rx.recv().await {
                        show_event(&ev);
                        if ev.device.is_none() && ev.kind.as_str() == end {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), rest).await;
            }
            break Outcome::Stopped(Box::new(r));
        }
    };
    bar.finish_and_clear();
    reader.abort();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rollout {
        let copy = serde_json::json!({
            "device": "a-very-long-device-name-in-a-large-campus-01", "wave": 1, "position": 0,
            "image": "c2960x-universalk9-mz.152-7.E8.bin", "target_version": "15.2(7)E8",
            "state": "running", "step": "copy", "step_state": "started",
            "old_version": "15.2(4)E10", "old_image": null, "new_version": null, "error": null,
            "reload_sent": false, "attempts": 1, "started_at": null, "finished_at": null,
            "transfer": {"id": 1, "protocol": "tftp", "client": "127.0.10.2:50000",
                "file": "c2960x-universalk9-mz.152-7.E8.bin", "direction": "download",
                "bytes": 1_500_000, "total": 3_145_805, "state": "active", "error": null,
                "started_at": "2026-11-24T12:50:00Z", "finished_at": null,
                "rate_bps": 1_250_000, "block_size": 512},
            "steps": []
        });
        let progress = |total: usize, running: usize, succeeded: usize| {
            serde_json::json!({"total": total, "pending": total - running - succeeded,
                "running": running, "succeeded": succeeded, "failed": 0, "skipped": 0, "aborted": 0})
        };
        serde_json::from_value(serde_json::json!({
            "id": "r-20261124-125134-3022", "name": "lab", "state": "running", "images": [],
            "paused": false, "abort_requested": false, "halt_reason": null,
            "created_at": "2026-11-24T12:49:00Z", "updated_at": "2026-11-24T12:50:00Z",
            "started_at": "2026-11-24T12:49:00Z", "finished_at": null,
            "progress": progress(3, 1, 1),
            "waves": [
                {"index": 0, "name": "canary", "progress": progress(1, 0, 1), "devices": []},
                {"index": 1, "name": "wave 1 (100%)", "progress": progress(2, 1, 0), "devices": [copy]},
            ],
            "skipped": []
        }))
        .unwrap()
    }

    #[test]
    fn the_display_fits_80_columns_and_speaks_plainly() {
        let now: jiff::Timestamp = "2026-11-24T12:51:00Z".parse().unwrap();
        let lines = render(&sample(), now, 200);
        let text = lines.join("\n");
        for l in &lines {
            assert!(l.chars().count() <= MAX_WIDTH, "{l:?}");
        }
        assert!(
            lines.iter().any(|l| l.starts_with("canary: 1/1 done")),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("wave 1: 0/2 done")),
            "{text}"
        );
        let device = lines.iter().find(|l| l.contains("copying")).expect(&text);
        assert!(device.contains(" 47% 1.5/3.1 MB  1.2 MB/s"), "{device}");
        // One of three finished in 2 minutes: two more take about 4.
        assert!(lines[0].ends_with("ETA 4m00s"), "{text}");
        assert!(
            text.contains("done 1  failed 0  remaining 2  of 3"),
            "{text}"
        );
        assert!(!text.contains("step_"), "{text}");
        for l in render(&sample(), now, 40) {
            assert!(l.chars().count() <= 40, "{l:?}");
        }
    }

    #[test]
    fn a_staged_device_says_when_its_window_opens() {
        let now: jiff::Timestamp = "2026-11-24T12:51:00Z".parse().unwrap();
        let mut r = sample();
        let job = &mut r.waves[1].devices[0].job;
        job.step = Some("verify_md5".into());
        job.waits_for_window = Some("Tue 2026-11-24 22:00 Europe/Berlin (21:00 UTC)".into());
        // Cut to 80 columns like every line; `rollout show` prints it whole.
        let lines = render(&r, now, 120);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("staged (waits for window Tue 2026-11-24 22:00")),
            "{lines:#?}"
        );
        for l in render(&r, now, 200) {
            assert!(l.chars().count() <= MAX_WIDTH, "{l:?}");
        }
    }
}
