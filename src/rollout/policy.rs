//! What a rollout does next, decided without I/O: pure functions of a snapshot of the rollout
//! (its flags and its devices' states), what just happened, and `now`. The engine reads the
//! snapshot from the database, asks here, and writes the decision with its event; so every
//! rule of canary, waves, `max_failures`, pause, abort, retry, windows and end states is
//! table-tested below without a database, a lab or a clock.

use jiff::Timestamp;

use super::model::{DeviceJob, JobState, RolloutRecord, RolloutState};
use crate::playbook::{Opening, Window};

/// The part of a device job the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobView {
    pub wave: usize,
    pub state: JobState,
}

/// The part of a rollout the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RolloutView {
    pub state: RolloutState,
    pub paused: bool,
    pub abort_requested: bool,
}

impl RolloutView {
    pub(crate) fn of(r: &RolloutRecord) -> RolloutView {
        RolloutView {
            state: r.state,
            paused: r.paused,
            abort_requested: r.abort_requested,
        }
    }
}

impl JobView {
    pub(crate) fn all(jobs: &[DeviceJob]) -> Vec<JobView> {
        jobs.iter()
            .map(|j| JobView {
                wave: j.wave,
                state: j.state,
            })
            .collect()
    }
}

/// The rollout's limits, from its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The failure count that halts the rollout (one more than `max_failures` tolerates).
    pub halt_after_failures: usize,
    /// Whether wave 0 is a canary: any failure in it halts the rollout.
    pub canary: bool,
}

/// Counts of a rollout's devices by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub upgraded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub aborted: usize,
    pub remaining: usize,
}

impl Tally {
    pub(crate) fn of<'a>(jobs: impl IntoIterator<Item = &'a JobView>) -> Tally {
        Tally::of_counts(jobs.into_iter().map(|j| (j.state, 1)))
    }

    /// The tally from counts of jobs by state (one aggregate query, not every job).
    pub(crate) fn of_counts(counts: impl IntoIterator<Item = (JobState, usize)>) -> Tally {
        let mut t = Tally::default();
        for (state, n) in counts {
            match state {
                JobState::Succeeded => t.upgraded += n,
                // A rolled back device failed on the new image: it counts against max_failures.
                JobState::Failed | JobState::RolledBack => t.failed += n,
                JobState::Skipped => t.skipped += n,
                JobState::Aborted => t.aborted += n,
                JobState::Pending | JobState::Running => t.remaining += n,
            }
        }
        t
    }
}

/// Whether a device may start its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proceed {
    Go,
    /// Paused: wait for resume (or abort).
    Wait,
    /// Aborted, halted or shutting down: stop at this safe point.
    Stop,
}

pub(crate) fn proceed(r: RolloutView, shutting_down: bool) -> Proceed {
    if r.abort_requested || r.state == RolloutState::Halted || shutting_down {
        Proceed::Stop
    } else if r.paused {
        Proceed::Wait
    } else {
        Proceed::Go
    }
}

/// The wave to work on: the first with a device still to do. Retried devices of an earlier
/// wave bring the rollout back to that wave.
pub(crate) fn next_wave(jobs: &[JobView]) -> Option<usize> {
    jobs.iter()
        .filter(|j| !j.state.is_finished())
        .map(|j| j.wave)
        .min()
}

/// After a device finished: halt once the failures reach the limit. `None`: go on.
pub(crate) fn after_device(limits: Limits, r: RolloutView, tally: Tally) -> Option<String> {
    let failed = tally.failed;
    (failed >= limits.halt_after_failures && r.state != RolloutState::Halted).then(|| {
        format!(
            "{failed} device(s) failed, more than the {} tolerated by max_failures",
            limits.halt_after_failures.saturating_sub(1)
        )
    })
}

/// What follows a wave whose devices all finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterWave {
    /// The next wave may start; `failed` devices of this wave are within the limits.
    Next {
        failed: usize,
    },
    Halt(String),
    /// Aborted or halted meanwhile: nothing more starts.
    Stop,
}

pub(crate) fn after_wave(
    limits: Limits,
    r: RolloutView,
    wave: usize,
    jobs: &[JobView],
) -> AfterWave {
    if r.abort_requested || r.state == RolloutState::Halted {
        return AfterWave::Stop;
    }
    let failed = Tally::of(jobs.iter().filter(|j| j.wave == wave)).failed;
    if limits.canary && wave == 0 && failed > 0 {
        return AfterWave::Halt(format!(
            "the canary failed ({failed} device(s)); later waves were not started"
        ));
    }
    AfterWave::Next { failed }
}

/// How a rollout ends once no device runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Pending devices are marked aborted; the rollout is `aborted`.
    Aborted,
    /// Halted stays open: the operator retries failed devices or aborts.
    StayHalted,
    /// Devices are still to do (the rollout stopped without deciding, e.g. while its writes
    /// failed): it stays as it is and runs again.
    Unfinished,
    Completed {
        upgraded: usize,
    },
    CompletedWithFailures {
        failed: usize,
        upgraded: usize,
    },
}

impl End {
    pub(crate) fn state(&self) -> Option<RolloutState> {
        match self {
            End::Aborted => Some(RolloutState::Aborted),
            End::StayHalted | End::Unfinished => None,
            End::Completed { .. } => Some(RolloutState::Completed),
            End::CompletedWithFailures { .. } => Some(RolloutState::CompletedWithFailures),
        }
    }
}

pub(crate) fn end(r: RolloutView, jobs: &[JobView]) -> End {
    if r.abort_requested {
        return End::Aborted;
    }
    if r.state == RolloutState::Halted {
        return End::StayHalted;
    }
    let t = Tally::of(jobs);
    if t.remaining > 0 {
        End::Unfinished
    } else if t.failed == 0 {
        End::Completed {
            upgraded: t.upgraded,
        }
    } else {
        End::CompletedWithFailures {
            failed: t.failed,
            upgraded: t.upgraded,
        }
    }
}

/// What a retry of failed devices does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Nothing to retry: no device failed or was stopped.
    Nothing,
    /// Put them back in line; `restart` when the rollout's task has ended (halted, or ended
    /// with failures) and must run again.
    Requeue { devices: usize, restart: bool },
    /// The rollout can't take retries (completed without failures, or aborted).
    Refused,
}

pub(crate) fn retry(r: RolloutView, jobs: &[JobView]) -> Retry {
    if !r.state.may_retry() || r.abort_requested {
        return Retry::Refused;
    }
    let t = Tally::of(jobs);
    let devices = t.failed + t.aborted;
    if devices == 0 {
        return Retry::Nothing;
    }
    Retry::Requeue {
        devices,
        restart: matches!(
            r.state,
            RolloutState::Halted | RolloutState::CompletedWithFailures
        ),
    }
}

/// Whether a staged device may be changed now (boot variable, save, install, reload).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Changes {
    Allowed,
    WaitFor(Opening),
    /// The windows never open again (within the two weeks looked at).
    Never,
}

pub(crate) fn changes(windows: &[Window], now: Timestamp) -> Changes {
    if crate::playbook::any_contains(windows, now) {
        return Changes::Allowed;
    }
    match Opening::next(windows, now) {
        Some(o) => Changes::WaitFor(o),
        None => Changes::Never,
    }
}

/// What to do after a pass over a wave's devices in which none finished while the rollout
/// could go on: each went back in line because what it did could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stalled {
    /// Wait this long, then try the wave again.
    RetryAfter(std::time::Duration),
    /// Stop: halt the rollout with this reason.
    Halt(String),
}

/// Passes in a row without a finished device before the rollout is halted.
pub(crate) const STALLED_PASSES: u32 = 3;

/// After the `passes`-th pass in a row over wave `wave` in which no device finished: try again
/// after 1 s, then 2 s, …, and halt at the [`STALLED_PASSES`]-th, rather than go round at
/// full speed while the store refuses the devices' writes.
pub(crate) fn stalled(wave_name: &str, passes: u32) -> Stalled {
    if passes >= STALLED_PASSES {
        return Stalled::Halt(format!(
            "no device of {wave_name} could finish in {passes} attempts in a row: the database refused to record their steps (see the service log); retry once it takes writes again"
        ));
    }
    Stalled::RetryAfter(std::time::Duration::from_secs(
        1 << passes.saturating_sub(1).min(5),
    ))
}

/// What the rollout's task does about a device job it handed to the agents of the device's
/// site (`fleetup agent` drives it there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handed {
    /// It ended, or went back in line: this pass is done with the device.
    Ended,
    /// An agent holds it, or one of the site may still claim it: wait.
    Wait,
    /// It never started and no agent of the site drives any more: take it back and run it
    /// on this node.
    RunHere,
    /// The rollout is aborted and no agent holds it: take it back (the epoch moves on, so an
    /// agent that held it writes nothing more); one that had started ends aborted.
    TakeBack { started: bool },
    /// The rollout halted and no agent holds it: leave it as recorded; after a retry it goes
    /// on from there, on an agent of its site.
    Leave,
}

/// Decide for a handed job from its state, whether it is still handed to a site, whether an
/// agent holds it live, whether its site has an agent that drives, and the rollout.
pub(crate) fn handed(
    state: JobState,
    still_handed: bool,
    held_live: bool,
    site_drives: bool,
    r: RolloutView,
) -> Handed {
    if state.is_finished() || !still_handed {
        return Handed::Ended;
    }
    // The agent that holds it sees a pause, a halt or an abort itself, at its next step.
    if held_live {
        return Handed::Wait;
    }
    if r.abort_requested {
        return Handed::TakeBack {
            started: state == JobState::Running,
        };
    }
    if r.state == RolloutState::Halted {
        return Handed::Leave;
    }
    if state == JobState::Pending && !site_drives {
        return Handed::RunHere;
    }
    // A job that started is resumed by an agent of its site (the one that held it, back, or
    // another): it recorded its steps there, and no reload is ever sent twice.
    Handed::Wait
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    fn jobs(list: &[(usize, JobState)]) -> Vec<JobView> {
        list.iter()
            .map(|&(wave, state)| JobView { wave, state })
            .collect()
    }

    fn rollout(state: RolloutState) -> RolloutView {
        RolloutView {
            state,
            paused: false,
            abort_requested: false,
        }
    }

    const LIMITS: Limits = Limits {
        halt_after_failures: 2,
        canary: true,
    };

    #[test]
    fn proceed_table() {
        let running = rollout(RolloutState::Running);
        let paused = RolloutView {
            paused: true,
            ..running
        };
        let aborting = RolloutView {
            abort_requested: true,
            ..paused
        };
        let cases = [
            (running, false, Proceed::Go),
            (running, true, Proceed::Stop),
            (paused, false, Proceed::Wait),
            (aborting, false, Proceed::Stop),
            (rollout(RolloutState::Halted), false, Proceed::Stop),
        ];
        for (r, shutdown, want) in cases {
            assert_eq!(proceed(r, shutdown), want, "{r:?} shutdown={shutdown}");
        }
    }

    #[test]
    fn next_wave_is_the_first_with_work_left() {
        type Case<'a> = (&'a [(usize, JobState)], Option<usize>);
        let cases: [Case; 4] = [
            (&[(0, Succeeded), (1, Pending), (2, Pending)], Some(1)),
            // A retried canary device brings the rollout back to wave 0.
            (&[(0, Pending), (1, Succeeded), (2, Running)], Some(0)),
            (&[(0, Succeeded), (1, Failed), (1, Skipped)], None),
            (&[], None),
        ];
        for (list, want) in cases {
            assert_eq!(next_wave(&jobs(list)), want, "{list:?}");
        }
    }

    #[test]
    fn threshold_halts_at_the_limit_once() {
        let running = rollout(RolloutState::Running);
        assert_eq!(
            after_device(
                LIMITS,
                running,
                Tally::of(&jobs(&[(1, Failed), (1, Running)]))
            ),
            None
        );
        let halt = after_device(
            LIMITS,
            running,
            Tally::of(&jobs(&[(1, Failed), (2, Failed)])),
        );
        assert_eq!(
            halt.as_deref(),
            Some("2 device(s) failed, more than the 1 tolerated by max_failures")
        );
        // Already halted: not again.
        assert_eq!(
            after_device(
                LIMITS,
                rollout(RolloutState::Halted),
                Tally::of(&jobs(&[(1, Failed), (2, Failed), (2, Failed)]))
            ),
            None
        );
        // max_failures 0: the first failure halts.
        let strict = Limits {
            halt_after_failures: 1,
            canary: false,
        };
        assert!(after_device(strict, running, Tally::of(&jobs(&[(3, Failed)]))).is_some());
    }

    #[test]
    fn canary_and_waves() {
        let running = rollout(RolloutState::Running);
        let list = jobs(&[(0, Failed), (1, Pending)]);
        assert_eq!(
            after_wave(LIMITS, running, 0, &list),
            AfterWave::Halt("the canary failed (1 device(s)); later waves were not started".into())
        );
        // Without a canary, wave 0 is an ordinary wave: its failure counts against the limit only.
        let no_canary = Limits {
            canary: false,
            ..LIMITS
        };
        assert_eq!(
            after_wave(no_canary, running, 0, &list),
            AfterWave::Next { failed: 1 }
        );
        // A failure in a later wave, within the limit, lets the next wave start.
        assert_eq!(
            after_wave(LIMITS, running, 1, &jobs(&[(0, Succeeded), (1, Failed)])),
            AfterWave::Next { failed: 1 }
        );
        let aborting = RolloutView {
            abort_requested: true,
            ..running
        };
        assert_eq!(after_wave(LIMITS, aborting, 1, &list), AfterWave::Stop);
        assert_eq!(
            after_wave(LIMITS, rollout(RolloutState::Halted), 1, &list),
            AfterWave::Stop
        );
    }

    #[test]
    fn end_states() {
        let running = rollout(RolloutState::Running);
        let cases = [
            (
                running,
                jobs(&[(0, Succeeded), (1, Skipped)]),
                End::Completed { upgraded: 1 },
            ),
            (
                running,
                jobs(&[(0, Succeeded), (1, Failed), (1, Succeeded)]),
                End::CompletedWithFailures {
                    failed: 1,
                    upgraded: 2,
                },
            ),
            (
                rollout(RolloutState::Halted),
                jobs(&[(0, Failed)]),
                End::StayHalted,
            ),
            (
                running,
                jobs(&[(0, Succeeded), (1, Running), (1, Pending)]),
                End::Unfinished,
            ),
            (
                RolloutView {
                    abort_requested: true,
                    ..rollout(RolloutState::Halted)
                },
                jobs(&[(0, Failed), (1, Pending)]),
                End::Aborted,
            ),
        ];
        for (r, list, want) in cases {
            let got = end(r, &list);
            assert_eq!(got, want, "{r:?} {list:?}");
        }
        assert_eq!(
            End::CompletedWithFailures {
                failed: 1,
                upgraded: 0
            }
            .state(),
            Some(RolloutState::CompletedWithFailures)
        );
        assert_eq!(End::StayHalted.state(), None);
    }

    #[test]
    fn retry_table() {
        let failed = jobs(&[(0, Succeeded), (1, Failed), (1, Aborted)]);
        let cases = [
            (
                rollout(RolloutState::Halted),
                Retry::Requeue {
                    devices: 2,
                    restart: true,
                },
            ),
            (
                rollout(RolloutState::CompletedWithFailures),
                Retry::Requeue {
                    devices: 2,
                    restart: true,
                },
            ),
            (
                rollout(RolloutState::Running),
                Retry::Requeue {
                    devices: 2,
                    restart: false,
                },
            ),
            (rollout(RolloutState::Completed), Retry::Refused),
            (rollout(RolloutState::Aborted), Retry::Refused),
        ];
        for (r, want) in cases {
            assert_eq!(retry(r, &failed), want, "{r:?}");
        }
        assert_eq!(
            retry(
                rollout(RolloutState::Running),
                &jobs(&[(0, Succeeded), (1, Running)])
            ),
            Retry::Nothing
        );
    }

    #[test]
    fn changes_wait_for_the_window() {
        let w = |s: &str| Window::parse(s).unwrap();
        let ts = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(changes(&[], ts("2026-12-04T12:00:00Z")), Changes::Allowed);
        let sat = [w("Sat 01:00-05:00 Europe/Berlin")];
        assert_eq!(changes(&sat, ts("2026-12-05T01:00:00Z")), Changes::Allowed);
        match changes(&sat, ts("2026-12-04T12:00:00Z")) {
            Changes::WaitFor(o) => assert_eq!(o.at, ts("2026-12-05T00:00:00Z")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wave_that_finishes_nothing_backs_off_then_halts() {
        assert_eq!(
            stalled("wave 1", 1),
            Stalled::RetryAfter(std::time::Duration::from_secs(1))
        );
        assert_eq!(
            stalled("wave 1", 2),
            Stalled::RetryAfter(std::time::Duration::from_secs(2))
        );
        match stalled("canary", STALLED_PASSES) {
            Stalled::Halt(reason) => {
                assert!(
                    reason.contains("canary") && reason.contains("3 attempts"),
                    "{reason}"
                )
            }
            other => panic!("halts at the third pass: {other:?}"),
        }
    }

    #[test]
    fn a_handed_job_waits_for_its_site_unless_it_never_started_and_no_agent_drives() {
        use JobState::*;
        let run = RolloutView {
            state: RolloutState::Running,
            paused: false,
            abort_requested: false,
        };
        let paused = RolloutView {
            paused: true,
            ..run
        };
        let aborted = RolloutView {
            abort_requested: true,
            ..run
        };
        let halted = RolloutView {
            state: RolloutState::Halted,
            ..run
        };
        // (state, still handed, held live, site drives, rollout) -> decision
        let table = [
            (Succeeded, true, true, true, run, Handed::Ended),
            (Failed, true, false, false, aborted, Handed::Ended),
            (Pending, false, false, true, run, Handed::Ended),
            (Running, true, true, true, aborted, Handed::Wait),
            (Running, true, true, false, halted, Handed::Wait),
            (Pending, true, false, true, run, Handed::Wait),
            (Pending, true, false, true, paused, Handed::Wait),
            (Running, true, false, false, run, Handed::Wait),
            (Pending, true, false, false, run, Handed::RunHere),
            (Pending, true, false, false, paused, Handed::RunHere),
            (
                Pending,
                true,
                false,
                true,
                aborted,
                Handed::TakeBack { started: false },
            ),
            (
                Running,
                true,
                false,
                true,
                aborted,
                Handed::TakeBack { started: true },
            ),
            (Running, true, false, true, halted, Handed::Leave),
            (Pending, true, false, false, halted, Handed::Leave),
        ];
        for (state, still, live, drives, r, want) in table {
            assert_eq!(
                handed(state, still, live, drives, r),
                want,
                "{state:?} handed={still} live={live} drives={drives} {r:?}"
            );
        }
    }
}
