//! `fleetup run` / `fleetup upgrade`: follow a rollout in the terminal until it ends, with one
//! progress line per active device and an overall bar, or as JSON lines for machines.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::{Client, ClientError};

/// How a followed rollout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub state: String,
    /// Every targeted device ended upgraded (or skipped as already current).
    pub all_upgraded: bool,
    pub detail: Value,
}

fn ended(state: &str) -> bool {
    matches!(
        state,
        "completed" | "completed_with_failures" | "aborted" | "halted"
    )
}

/// Read the server-sent events of a rollout and pass each event's JSON on.
async fn read_events(client: Client, id: String, tx: tokio::sync::mpsc::UnboundedSender<Value>) {
    let url = client.url(&format!("/rollouts/{id}/events"));
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
            if let Ok(v) = serde_json::from_str::<Value>(&data)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    }
}

fn all_upgraded(detail: &Value) -> bool {
    let p = &detail["progress"];
    let total = p["total"].as_u64().unwrap_or(0);
    let good = p["succeeded"].as_u64().unwrap_or(0) + p["skipped"].as_u64().unwrap_or(0);
    detail["state"] == "completed" && total == good
}

fn event_line(ev: &Value) -> String {
    let at = ev["at"].as_str().unwrap_or("");
    let time = at.get(11..19).unwrap_or(at);
    let device = ev["device"]
        .as_str()
        .map(|d| format!("{d}: "))
        .unwrap_or_default();
    let step = ev["step"]
        .as_str()
        .map(|s| format!("[{s}] "))
        .unwrap_or_default();
    format!(
        "{time} {device}{step}{} {}",
        ev["kind"].as_str().unwrap_or(""),
        ev["message"].as_str().unwrap_or("")
    )
}

/// Follow rollout `id` until it ends (or halts). `json`: one JSON event per line, no bars.
pub async fn follow(client: &Client, id: &str, json: bool) -> Result<Ending, ClientError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(read_events(client.clone(), id.to_string(), tx));
    let multi = MultiProgress::with_draw_target(if json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} devices {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    overall.set_prefix("rollout");
    let device_style = ProgressStyle::with_template("{prefix:>24} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(700));
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else {
                    // The event stream ended (service stopped?): fall back to polling.
                    tick.tick().await;
                    continue;
                };
                if json {
                    println!("{ev}");
                } else {
                    multi.suspend(|| eprintln!("{}", event_line(&ev)));
                }
                let kind = ev["kind"].as_str().unwrap_or("");
                if !matches!(kind, "completed" | "completed_with_failures" | "aborted" | "halted") {
                    continue;
                }
            }
            _ = tick.tick() => {}
        }
        let detail: Value = client.get_json(&format!("/rollouts/{id}")).await?;
        let p = &detail["progress"];
        let total = p["total"].as_u64().unwrap_or(0);
        let finished = total.saturating_sub(
            p["pending"].as_u64().unwrap_or(0) + p["running"].as_u64().unwrap_or(0),
        );
        overall.set_length(total);
        overall.set_position(finished);
        overall.set_message(format!(
            "{} | {} ok, {} failed, {} skipped",
            detail["state"].as_str().unwrap_or("?"),
            p["succeeded"],
            p["failed"],
            p["skipped"]
        ));
        let mut seen = Vec::new();
        for wave in detail["waves"].as_array().into_iter().flatten() {
            for d in wave["devices"].as_array().into_iter().flatten() {
                let name = d["device"].as_str().unwrap_or("?").to_string();
                if d["state"] != "running" {
                    continue;
                }
                seen.push(name.clone());
                let bar = bars.entry(name.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(device_style.clone());
                    b.set_prefix(name.clone());
                    b
                });
                let step = d["step"].as_str().unwrap_or("starting");
                let t = &d["transfer"];
                let transfer = match (t["bytes"].as_u64(), t["total"].as_u64()) {
                    (Some(b), Some(total)) if step == "copy" && total > 0 => format!(
                        " {:>3}% {:.1}/{:.1} MB {:.1} MB/s",
                        b * 100 / total,
                        b as f64 / 1e6,
                        total as f64 / 1e6,
                        t["rate_bps"].as_u64().unwrap_or(0) as f64 / 1e6
                    ),
                    _ => String::new(),
                };
                bar.set_message(format!("{step}{transfer}"));
            }
        }
        bars.retain(|name, bar| {
            let keep = seen.contains(name);
            if !keep {
                bar.finish_and_clear();
                multi.remove(bar);
            }
            keep
        });
        let state = detail["state"].as_str().unwrap_or("").to_string();
        if ended(&state) {
            overall.finish();
            reader.abort();
            return Ok(Ending {
                all_upgraded: all_upgraded(&detail),
                state,
                detail,
            });
        }
    }
}
