//! What proves that a device restarted since its reload.

use super::parse::ShowVersion;

/// What tells that a device has restarted since its reload.
#[derive(Debug, Clone)]
pub enum RestartEvidence {
    /// `show version` just before the reload: a different `System restarted at` time, another
    /// running version or image, or a smaller uptime proves the restart.
    Since(Box<ShowVersion>),
    /// Only a bound: the device has restarted when its uptime is below this many seconds.
    /// Uptime counts whole minutes, so it alone cannot tell for a box up less than a minute.
    /// `None`: any answering device counts as restarted.
    UptimeBelow(Option<u64>),
}

impl RestartEvidence {
    /// Since the reload of a device that printed `before` just ahead of it.
    pub fn since(before: &ShowVersion) -> RestartEvidence {
        RestartEvidence::Since(Box::new(before.clone()))
    }

    /// Whether a device that now prints `now` has restarted. Without a restart time, a
    /// version or an uptime to compare, any answering device counts as restarted.
    pub(crate) fn restarted(&self, now: &ShowVersion) -> bool {
        let uptime_below = |bound: Option<u64>| match (bound, now.uptime_seconds()) {
            (Some(bound), Some(up)) => up < bound,
            _ => true,
        };
        match self {
            RestartEvidence::Since(before) => {
                // Another version or image can only come from a restart; checked first, since
                // the restart time counts whole seconds and a fast box (a lab device) can
                // restart within the second it last started.
                if before.version != now.version || before.image != now.image {
                    return true;
                }
                if let (Some(b), Some(n)) = (&before.restarted_at, &now.restarted_at) {
                    return b != n;
                }
                uptime_below(before.uptime_seconds())
            }
            RestartEvidence::UptimeBelow(bound) => uptime_below(*bound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_evidence() {
        let v = |version: &str, uptime: &str, restarted: Option<&str>| ShowVersion {
            version: version.into(),
            image: Some("flash:x.bin".into()),
            uptime: Some(uptime.into()),
            restarted_at: restarted.map(Into::into),
            ..Default::default()
        };
        // Up less than a minute before the reload: the uptime cannot tell, the restart time can.
        let before = v(
            "15.2(7)E3",
            "0 minutes",
            Some("15:47:00 UTC Tue Nov 24 2026"),
        );
        let e = RestartEvidence::since(&before);
        assert!(!e.restarted(&before));
        assert!(e.restarted(&v(
            "15.2(7)E3",
            "0 minutes",
            Some("15:48:27 UTC Tue Nov 24 2026")
        )));
        // Restarted within the same second (the time counts whole seconds), on another image:
        // the new version proves it.
        let mut same_second = v(
            "15.2(7)E8",
            "0 minutes",
            Some("15:47:00 UTC Tue Nov 24 2026"),
        );
        same_second.image = Some("flash:y.bin".into());
        assert!(e.restarted(&same_second));
        // No restart time printed (Catalyst 9000): another version proves it...
        let before = v("17.06.05", "0 minutes", None);
        let e = RestartEvidence::since(&before);
        assert!(!e.restarted(&before));
        assert!(e.restarted(&v("17.09.04a", "0 minutes", None)));
        // ...and so does a smaller uptime.
        let before = v("17.06.05", "3 weeks, 2 days, 5 minutes", None);
        let e = RestartEvidence::since(&before);
        assert!(!e.restarted(&v("17.06.05", "3 weeks, 2 days, 6 minutes", None)));
        assert!(e.restarted(&v("17.06.05", "1 minute", None)));
        // A resumed wait knows only a bound.
        let e = RestartEvidence::UptimeBelow(Some(600));
        assert!(e.restarted(&v("x", "9 minutes", None)));
        assert!(!e.restarted(&v("x", "3 days, 1 minute", None)));
        assert!(RestartEvidence::UptimeBelow(None).restarted(&v("x", "3 days", None)));
    }
}
