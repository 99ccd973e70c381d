//! `fleetup run` and friends as a user runs them: the real binary against a real `fleetup serve`
//! process, with the simulated fleet in this test process. Inventory and image go in through
//! the CLI too.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use fleetup::sim::Fault;
use serde_json::Value;

use crate::support::{IMAGE, IMAGE_VERSION, Rig, TOKEN, assert_success, stderr, stdout};

const OLD_VERSION: &str = "15.2(4)E10";

/// A lab playbook with these `strategy` lines; the reloading device is polled every second.
fn playbook(strategy: &str) -> String {
    crate::support::playbook(&format!("strategy:\n{strategy}"))
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{o:?}")))
        .collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_prints_waves_and_skips_and_touches_nothing() {
    // A device of another platform in the same group: the playbook names no image for it.
    let extra = "  - name: nx-core-1\n    host: 127.0.0.2\n    port: 22\n    platform: nxos\n    site: lab\n    groups: [lab]\n";
    let rig = Rig::options(4)
        .serve_process()
        .cli_setup(extra)
        .start()
        .await;
    let pb = rig.write_playbook(
        "dry.yml",
        &playbook("  canary: 1\n  waves: [\"50%\", \"100%\"]\n  concurrency: 2\n"),
    );
    let out = rig.fleetup(&["run", "--dry-run", path_str(&pb)]).await;
    assert_success(&out);
    let text = stdout(&out);
    // Canary of 1, then 50% of the 3 left (rounded up to 2), then the last one.
    let waves: Vec<(&str, usize)> = text
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(": ")?;
            let n = rest.strip_suffix(" device(s)")?.parse().ok()?;
            Some((name, n))
        })
        .collect();
    assert_eq!(waves.len(), 3, "{text}");
    assert_eq!(
        waves.iter().map(|w| w.1).collect::<Vec<_>>(),
        vec![1, 2, 1],
        "{text}"
    );
    for name in rig.names() {
        assert!(
            text.lines()
                .any(|l| l.trim().starts_with(&format!("{name} ("))),
            "{name} is planned: {text}"
        );
    }
    let skip_line = text
        .lines()
        .find(|l| l.trim().starts_with("nx-core-1:"))
        .unwrap_or_else(|| panic!("the nxos device is listed as skipped: {text}"));
    assert!(
        skip_line.contains("no image for platform nxos"),
        "{skip_line}"
    );
    // No device saw a command: the dry run opened no session.
    for name in rig.names() {
        let st = rig.lab.state(&name).unwrap();
        assert!(
            st.last_commands.is_empty(),
            "{name}: {:?}",
            st.last_commands
        );
        assert_eq!(st.version, OLD_VERSION);
        assert_eq!(st.reload_count, 0);
    }
    // Nor was a rollout created.
    let out = rig.fleetup(&["device", "list"]).await;
    assert_success(&out);
    assert!(
        stdout(&out)
            .lines()
            .filter(|l| l.contains(" never"))
            .count()
            == 5,
        "facts of no device were read: {}",
        stdout(&out)
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_json_follows_to_the_end_and_upgrades_everything() {
    let rig = Rig::options(3).serve_process().cli_setup("").start().await;
    let pb = rig.write_playbook(
        "all.yml",
        &playbook("  canary: 1\n  waves: [\"100%\"]\n  concurrency: 2\n"),
    );
    let out = rig.fleetup(&["run", path_str(&pb), "--json"]).await;
    assert_success(&out);
    let lines = json_lines(&out);
    assert!(lines.len() > 3, "events were streamed: {}", stdout(&out));
    let last = lines.last().unwrap();
    assert_eq!(last["all_upgraded"], true, "{last}");
    assert_eq!(last["state"], "completed", "{last}");
    let id = last["rollout"].as_str().unwrap();
    // The events before it belong to this rollout, and every device got to its post-check.
    for ev in &lines[..lines.len() - 1] {
        assert!(ev["kind"].is_string(), "{ev}");
    }
    for name in rig.names() {
        assert!(
            lines
                .iter()
                .any(|e| e["device"] == name.as_str() && e["step"] == "post_check"),
            "{name} has a post_check event in {}",
            stdout(&out)
        );
        let st = rig.lab.state(&name).unwrap();
        assert_eq!(st.version, IMAGE_VERSION, "{name}");
        assert_eq!(st.reload_count, 1, "{name}");
    }
    // `fleetup follow` on the finished rollout says the same and exits 0.
    let out = rig.fleetup(&["follow", id, "--json"]).await;
    assert_success(&out);
    let lines = json_lines(&out);
    assert_eq!(lines.last().unwrap()["all_upgraded"], true);
    // The same playbook again: every device is current, which is success, said as such.
    let out = rig.fleetup(&["run", path_str(&pb)]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("nothing to do: every targeted device (3) already runs"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_exits_non_zero_when_a_fault_halts_the_rollout() {
    let rig = Rig::options(3).serve_process().cli_setup("").start().await;
    let names = rig.names();
    // The canary fails its MD5 check: with no failure tolerated the rollout halts at once.
    assert!(rig.lab.set_fault(&names[0], Fault::CorruptDownload));
    let pb = rig.write_playbook(
        "halt.yml",
        &playbook("  canary: 1\n  concurrency: 2\n  max_failures: 0\n"),
    );
    let out = rig.fleetup(&["run", path_str(&pb), "--json"]).await;
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = json_lines(&out);
    let last = lines.last().unwrap();
    assert_eq!(last["state"], "halted", "{last}");
    assert_eq!(last["all_upgraded"], false, "{last}");
    assert!(
        lines
            .iter()
            .any(|e| e["device"] == names[0].as_str() && e["kind"] == "device_failed"),
        "the canary's failure is reported: {}",
        stdout(&out)
    );
    assert!(
        lines.iter().any(|e| e["kind"] == "halted"),
        "the halt is an event: {}",
        stdout(&out)
    );
    // The other devices were never started: still on the old version, never reloaded.
    for name in &names[1..] {
        let st = rig.lab.state(name).unwrap();
        assert_eq!(st.version, OLD_VERSION, "{name}");
        assert_eq!(st.reload_count, 0, "{name}");
    }
    // Without --json the summary names the halt too.
    let id = last["rollout"].as_str().unwrap();
    let out = rig.fleetup(&["follow", id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(" halted:"), "{}", stdout(&out));
    // `rollout show`: the canary's failure said once, what was left on flash, what to do.
    let out = rig.fleetup(&["rollout", "show", id]).await;
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("state    halted"), "{text}");
    assert!(text.contains("  canary: 0/1 done, 1 failed"), "{text}");
    assert!(text.contains("  wave 1: 0/2 done"), "{text}");
    let error = text
        .lines()
        .find(|l| l.contains("corrupt_image"))
        .unwrap_or_else(|| panic!("the error is shown: {text}"));
    assert!(
        error
            .trim()
            .starts_with("verify_md5 failed (corrupt_image): "),
        "{error}"
    );
    assert!(
        error.ends_with("the bad copy was deleted from flash"),
        "{error}"
    );
    assert_eq!(error.matches(names[0].as_str()).count(), 0, "{error}");
    assert_eq!(error.matches("corrupt_image").count(), 1, "{error}");
    assert!(
        text.contains(&format!("fleetup rollout retry {id}")),
        "{text}"
    );
    // The fault fixed, `rollout retry` puts the canary back in line and the rollout goes on.
    assert!(rig.lab.clear_faults(&names[0]));
    let out = rig.fleetup(&["rollout", "retry", id]).await;
    assert_success(&out);
    assert!(
        stdout(&out).contains("1 failed device(s) put back in line"),
        "{}",
        stdout(&out)
    );
    let out = rig.fleetup(&["follow", id, "--json"]).await;
    assert_success(&out);
    assert_eq!(json_lines(&out).last().unwrap()["state"], "completed");
    // The report, as text (waves named as everywhere), CSV and JSON.
    let out = rig.fleetup(&["rollout", "report", id]).await;
    assert_success(&out);
    let text = stdout(&out);
    let row = |n: &str| {
        text.lines()
            .find(|l| l.trim().starts_with(n))
            .unwrap()
            .to_string()
    };
    assert!(row(&names[0]).contains(" canary "), "{text}");
    assert!(row(&names[1]).contains(" wave 1 "), "{text}");
    assert!(
        row(&names[0]).contains(&format!("{OLD_VERSION} -> {IMAGE_VERSION}")),
        "{text}"
    );
    let out = rig.fleetup(&["rollout", "report", id, "--csv"]).await;
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("device,wave,result,"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stdout(&out).lines().count(), 4, "{}", stdout(&out));
    let out = rig.fleetup(&["rollout", "report", id, "--json"]).await;
    assert_success(&out);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["devices"].as_array().unwrap().len(), 3);
    // The list: one rollout, completed, all three done.
    let out = rig.fleetup(&["rollout", "list"]).await;
    assert_success(&out);
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with(id))
        .map(str::to_string);
    let line = line.unwrap_or_else(|| panic!("{}", stdout(&out)));
    assert!(line.contains(" completed "), "{line}");
    assert!(line.contains(" 3/0/3 "), "{line}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_playbook_is_refused_with_line_and_column() {
    let rig = Rig::options(1).serve_process().cli_setup("").start().await;
    // Line 12: an unknown field inside `strategy`.
    let text = playbook("  canary: 1\n  concurency: 5\n");
    assert_eq!(text.lines().nth(11), Some("  concurency: 5"), "{text}");
    let pb = rig.write_playbook("typo.yml", &text);
    for args in [
        vec!["run", path_str(&pb)],
        vec!["run", "--dry-run", path_str(&pb)],
    ] {
        let out = rig.fleetup(&args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = stderr(&out);
        // The file, the place and the problem, each said once, in no HTTP words.
        let expected = format!(
            "{} line 12, column 3: unknown field `concurency`",
            pb.display()
        );
        assert!(
            err.starts_with(&format!("fleetup: {expected}")),
            "{args:?}: {err}"
        );
        assert_eq!(err.matches("line").count(), 1, "{args:?}: {err}");
        assert!(
            !err.contains("422") && !err.contains("error:"),
            "{args:?}: {err}"
        );
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    }
    // Not YAML at all: the position of the syntax error.
    let pb = rig.write_playbook("broken.yml", "name: x\ntargets: [unclosed\n");
    let out = rig.fleetup(&["run", path_str(&pb)]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("line "), "{}", stderr(&out));
    assert!(stderr(&out).contains("column "), "{}", stderr(&out));
    // A playbook file that does not exist.
    let missing = rig.dir.path().join("missing.yml");
    let out = rig.fleetup(&["run", path_str(&missing)]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("missing.yml"), "{}", stderr(&out));
    // An unknown rollout: said plainly, exit 2.
    let out = rig.fleetup(&["rollout", "show", "r-nope"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(stderr(&out).trim(), "fleetup: no rollout r-nope");
    // Nothing was submitted and no device was touched.
    let st = rig.lab.state(&rig.names()[0]).unwrap();
    assert!(st.last_commands.is_empty(), "{:?}", st.last_commands);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn device_facts_prints_the_version_read_from_the_device() {
    let rig = Rig::options(1).serve_process().cli_setup("").start().await;
    let name = rig.names()[0].clone();
    let out = rig.fleetup(&["device", "facts", &name]).await;
    assert_success(&out);
    let text = stdout(&out);
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("version"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("a version line: {text}"));
    assert_eq!(version, rig.lab.state(&name).unwrap().version);
    assert_eq!(version, OLD_VERSION);
    // It was read over SSH: the device saw `show version`.
    let st = rig.lab.state(&name).unwrap();
    assert!(
        st.last_commands.iter().any(|c| c.contains("show version")),
        "{:?}",
        st.last_commands
    );
    // An unknown device: a clear error, non-zero exit.
    let out = rig.fleetup(&["device", "facts", "no-such-device"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-device"), "{}", stderr(&out));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_one_device_end_to_end() {
    let rig = Rig::options(2).serve_process().cli_setup("").start().await;
    let name = rig.names()[0].clone();
    let out = rig
        .fleetup(&[
            "upgrade",
            &name,
            "--image",
            IMAGE,
            "--via",
            "127.0.0.1",
            "--poll",
            "1",
            "--json",
        ])
        .await;
    assert_success(&out);
    let lines = json_lines(&out);
    let last = lines.last().unwrap();
    assert_eq!(last["all_upgraded"], true, "{last}");
    // Every step went by as a live event.
    for step in [
        "connect",
        "copy",
        "verify_md5",
        "set_boot",
        "reload",
        "wait_back",
        "post_check",
    ] {
        assert!(
            lines
                .iter()
                .any(|e| e["kind"] == "step_started" && e["step"] == step),
            "no {step} event"
        );
    }
    assert_eq!(rig.lab.state(&name).unwrap().version, IMAGE_VERSION);
    assert_eq!(rig.lab.state(&name).unwrap().reload_count, 1);
    // Only that device was touched.
    let other = &rig.names()[1];
    assert!(rig.lab.state(other).unwrap().last_commands.is_empty());
    // An image that is not in the store: a clear error, non-zero exit.
    let out = rig
        .fleetup(&[
            "upgrade",
            &name,
            "--image",
            "nope.bin",
            "--via",
            "127.0.0.1",
        ])
        .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope.bin"), "{}", stderr(&out));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_pause_resume_and_abort_from_the_terminal() {
    // Copies slow enough to act while the canary copies.
    let rig = Rig::options(3)
        .lab(|c| c.rate = Some(400_000))
        .serve_process()
        .cli_setup("")
        .start()
        .await;
    let pb = rig.write_playbook(
        "slow.yml",
        &playbook("  canary: 1\n  waves: [\"100%\"]\n  concurrency: 2\n"),
    );
    let out = rig.fleetup(&["run", "--detach", path_str(&pb)]).await;
    assert_success(&out);
    let id = stdout(&out).trim().to_string();
    let out = rig.fleetup(&["rollout", "pause", &id]).await;
    assert_success(&out);
    assert!(stdout(&out).contains("(now paused)"), "{}", stdout(&out));
    let out = rig.fleetup(&["rollout", "show", &id]).await;
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("state    paused"), "{text}");
    assert!(text.contains("  canary: "), "{text}");
    assert!(text.contains("  wave 1: "), "{text}");
    let out = rig.fleetup(&["rollout", "resume", &id]).await;
    assert_success(&out);
    assert!(stdout(&out).contains("(now running)"), "{}", stdout(&out));
    let out = rig.fleetup(&["rollout", "abort", &id]).await;
    assert_success(&out);
    assert!(stdout(&out).contains("abort requested"), "{}", stdout(&out));
    // Followed to its end: aborted, so not every device was upgraded: exit 1.
    let out = rig.fleetup(&["follow", &id, "--json"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(json_lines(&out).last().unwrap()["state"], "aborted");
    // An ended rollout cannot be resumed: refused in plain words, exit 2.
    let out = rig.fleetup(&["rollout", "resume", &id]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains("has ended (aborted)"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("409"), "{}", stderr(&out));
    rig.stop().await;
}

/// A tmux server of its own, with one 80x30 pane running `command`.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let socket = format!("fleetup-it-{}", rand::random::<u32>());
        let tmux = Tmux { socket };
        let status = tmux
            .cmd(&[
                "new-session",
                "-d",
                "-x",
                "80",
                "-y",
                "30",
                "-s",
                "t",
                command,
            ])
            .status()
            .expect("tmux is installed (scripts/test installs it)");
        assert!(status.success());
        // Keep the pane after the command ends, to read its last words.
        tmux.cmd(&["set-option", "-w", "-t", "t", "remain-on-exit", "on"])
            .status()
            .unwrap();
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new("tmux");
        c.args(["-L", &self.socket]).args(args);
        c
    }

    fn capture(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane once `ready` holds for it; the rollout's pace sets how long that takes.
    async fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let screen = self.capture();
            if ready(&screen) {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never saw {what}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_fits_80_columns_and_ctrl_c_detaches() {
    // 3 MB at 600 kB/s: each copy shows for about five seconds.
    let rig = Rig::options(2)
        .lab(|c| c.rate = Some(600_000))
        .serve_process()
        .cli_setup("")
        .start()
        .await;
    let pb = rig.write_playbook(
        "watch.yml",
        &playbook("  canary: 1\n  waves: [\"100%\"]\n  concurrency: 2\n"),
    );
    let command = format!(
        "env FLEETUP_SERVER={} FLEETUP_API_TOKEN={TOKEN} {} run {}; echo EXIT=$?",
        rig.base_url(),
        env!("CARGO_BIN_EXE_fleetup"),
        path_str(&pb)
    );
    let tmux = Tmux::start(&command);
    let screen = tmux
        .wait_for("a copy with its progress", |s| {
            s.lines()
                .any(|l| l.contains("copying") && l.contains("MB/s"))
        })
        .await;
    for line in screen.lines() {
        assert!(line.chars().count() <= 80, "{line:?}\n{screen}");
    }
    assert!(
        screen.lines().any(|l| l.starts_with("canary: ")),
        "a wave header:\n{screen}"
    );
    assert!(
        screen.lines().any(|l| l.starts_with("wave 1: ")),
        "a wave header:\n{screen}"
    );
    let device = screen
        .lines()
        .find(|l| l.contains("copying"))
        .unwrap()
        .trim();
    assert!(device.starts_with(&rig.names()[0]), "{device}");
    assert!(device.contains('%'), "{device}");
    assert!(screen.contains("remaining "), "totals:\n{screen}");
    assert!(screen.contains("ETA"), "ETA:\n{screen}");
    for raw in ["step_started", "step_done", "ssh-ed25519", "ssh-rsa", "{\""] {
        assert!(!screen.contains(raw), "{raw} shown:\n{screen}");
    }
    // Ctrl-C: the CLI lets go, names the rollout and the commands, exits 130.
    tmux.cmd(&["send-keys", "-t", "t", "C-c"]).status().unwrap();
    let screen = tmux
        .wait_for("the exit code", |s| s.contains("EXIT="))
        .await;
    assert!(screen.contains("EXIT=130"), "{screen}");
    let id = screen
        .split("detached from rollout ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("the rollout is named:\n{screen}"))
        .to_string();
    assert!(screen.contains(&format!("fleetup follow {id}")), "{screen}");
    assert!(
        screen.contains(&format!("fleetup rollout pause {id}")),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("fleetup rollout abort {id}")),
        "{screen}"
    );
    // The rollout went on without the CLI and ends with every device upgraded.
    let out = rig.fleetup(&["follow", &id, "--json"]).await;
    assert_success(&out);
    let last = json_lines(&out).last().unwrap().clone();
    assert_eq!(last["state"], "completed", "{last}");
    for name in rig.names() {
        assert_eq!(
            rig.lab.state(&name).unwrap().version,
            IMAGE_VERSION,
            "{name}"
        );
    }
    drop(tmux);
    rig.stop().await;
}
