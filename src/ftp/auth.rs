//! Who may log in: the service account, temporary per-rollout accounts, optionally anonymous;
//! and the per-source lockout after repeated failures. Pure: time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// Identifies a temporary account so its creator can remove it (e.g. when a rollout ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialToken(u64);

/// Comparing digests keeps the comparison constant-time whatever the lengths of the inputs.
type Digest = [u8; 32];

fn digest(s: &str) -> Digest {
    Sha256::digest(s.as_bytes()).into()
}

#[derive(Clone)]
struct Account {
    user: String,
    user_digest: Digest,
    pass_digest: Digest,
}

impl Account {
    fn new(user: &str, pass: &str) -> Self {
        Self {
            user: user.to_string(),
            user_digest: digest(user),
            pass_digest: digest(pass),
        }
    }
}

struct Accounts {
    service: Account,
    temporary: HashMap<CredentialToken, Account>,
    next_token: u64,
    anonymous: bool,
}

/// The accounts the FTP server accepts; cheap to clone, shared with the running server, so the
/// rollout engine can add and remove temporary accounts while it runs.
#[derive(Clone)]
pub struct FtpCredentials {
    inner: Arc<Mutex<Accounts>>,
}

impl std::fmt::Debug for FtpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = self.lock();
        f.debug_struct("FtpCredentials")
            .field("user", &a.service.user)
            .field("temporary", &a.temporary.len())
            .field("anonymous", &a.anonymous)
            .finish_non_exhaustive()
    }
}

/// The outcome of a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Login {
    Service(String),
    Temporary(String),
    Anonymous,
}

impl FtpCredentials {
    /// The service account, anonymous login off.
    pub fn new(user: &str, password: &str) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Accounts {
                service: Account::new(user, password),
                temporary: HashMap::new(),
                next_token: 0,
                anonymous: false,
            })),
        }
    }

    pub(crate) fn set_anonymous(&self, allowed: bool) {
        self.lock().anonymous = allowed;
    }

    /// Add an account valid until [`FtpCredentials::remove`] is called with the returned token.
    /// Meant for one rollout: when the rollout ends, a leaked URL stops working.
    pub fn add_temporary(&self, user: &str, password: &str) -> CredentialToken {
        let mut a = self.lock();
        a.next_token += 1;
        let token = CredentialToken(a.next_token);
        a.temporary.insert(token, Account::new(user, password));
        token
    }

    /// Remove a temporary account; true if it existed. Sessions already logged in keep running,
    /// as a device in the middle of a copy should not fail because its rollout was just closed.
    pub fn remove(&self, token: CredentialToken) -> bool {
        self.lock().temporary.remove(&token).is_some()
    }

    /// Check a USER/PASS pair. Every account is compared, in constant time, so neither the
    /// timing nor the number of accounts tells which part was wrong.
    pub(crate) fn verify(&self, user: &str, password: &str) -> Option<Login> {
        let a = self.lock();
        if a.anonymous
            && (user.eq_ignore_ascii_case("anonymous") || user.eq_ignore_ascii_case("ftp"))
        {
            return Some(Login::Anonymous);
        }
        let (u, p) = (digest(user), digest(password));
        let check = |acc: &Account| acc.user_digest.ct_eq(&u) & acc.pass_digest.ct_eq(&p);
        let mut found = None;
        if bool::from(check(&a.service)) {
            found = Some(Login::Service(a.service.user.clone()));
        }
        for acc in a.temporary.values() {
            if bool::from(check(acc)) && found.is_none() {
                found = Some(Login::Temporary(acc.user.clone()));
            }
        }
        found
    }

    fn lock(&self) -> MutexGuard<'_, Accounts> {
        // The maps stay consistent across a panic elsewhere; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Failed logins per source address. After `after` consecutive failures the address is locked
/// out for `duration`; a success resets its count.
#[derive(Debug)]
pub(crate) struct Lockout {
    after: u32,
    duration: Duration,
    sources: HashMap<IpAddr, Failures>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Above this many tracked addresses, stale entries are pruned on the next failure, so a scan
/// from many addresses cannot grow the map without bound.
const PRUNE_ABOVE: usize = 10_000;

impl Lockout {
    /// `after == 0` disables the lockout.
    pub(crate) fn new(after: u32, duration: Duration) -> Self {
        Self {
            after,
            duration,
            sources: HashMap::new(),
        }
    }

    /// How much longer `ip` is locked out, if it is.
    pub(crate) fn locked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let until = self.sources.get(&ip)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Record a failed login; returns true when this failure locked the address out.
    pub(crate) fn record_failure(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.after == 0 {
            return false;
        }
        if self.sources.len() > PRUNE_ABOVE {
            let keep = self.duration;
            self.sources.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now) || now.duration_since(f.last) < keep
            });
        }
        let f = self.sources.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if f.locked_until.is_some_and(|u| u <= now) {
            // The previous lockout expired: start counting afresh.
            f.count = 0;
            f.locked_until = None;
        }
        f.count += 1;
        f.last = now;
        if f.count >= self.after && f.locked_until.is_none() {
            f.locked_until = Some(now + self.duration);
            return true;
        }
        false
    }

    pub(crate) fn record_success(&mut self, ip: IpAddr) {
        self.sources.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_and_temporary_accounts() {
        let c = FtpCredentials::new("fleetup", "s3cret");
        assert_eq!(
            c.verify("fleetup", "s3cret"),
            Some(Login::Service("fleetup".into()))
        );
        assert_eq!(c.verify("fleetup", "s3cre"), None);
        assert_eq!(c.verify("fleetup", ""), None);
        assert_eq!(c.verify("Fleetup", "s3cret"), None);
        assert_eq!(c.verify("anonymous", "me@example.com"), None);

        let t = c.add_temporary("r42", "one-time");
        assert_eq!(
            c.verify("r42", "one-time"),
            Some(Login::Temporary("r42".into()))
        );
        assert!(c.remove(t));
        assert!(!c.remove(t));
        assert_eq!(c.verify("r42", "one-time"), None);
        assert_eq!(
            c.verify("fleetup", "s3cret"),
            Some(Login::Service("fleetup".into()))
        );
    }

    #[test]
    fn anonymous_only_when_enabled() {
        let c = FtpCredentials::new("fleetup", "x");
        assert_eq!(c.verify("ftp", ""), None);
        c.set_anonymous(true);
        assert_eq!(c.verify("ftp", ""), Some(Login::Anonymous));
        assert_eq!(c.verify("ANONYMOUS", "a@b"), Some(Login::Anonymous));
    }

    #[test]
    fn lockout_after_n_failures_then_expires() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        let mut l = Lockout::new(3, Duration::from_secs(60));
        assert!(!l.record_failure(ip, t0));
        assert!(!l.record_failure(ip, t0));
        assert_eq!(l.locked_for(ip, t0), None);
        assert!(l.record_failure(ip, t0));
        assert_eq!(l.locked_for(ip, t0), Some(Duration::from_secs(60)));
        assert_eq!(l.locked_for(other, t0), None);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(l.locked_for(ip, later), None);
        // After expiry the count starts again from zero.
        assert!(!l.record_failure(ip, later));
        assert_eq!(l.locked_for(ip, later), None);
    }

    #[test]
    fn success_resets_the_count_and_zero_disables() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        let mut l = Lockout::new(2, Duration::from_secs(60));
        l.record_failure(ip, t0);
        l.record_success(ip);
        assert!(!l.record_failure(ip, t0));
        let mut off = Lockout::new(0, Duration::from_secs(60));
        for _ in 0..10 {
            assert!(!off.record_failure(ip, t0));
        }
        assert_eq!(off.locked_for(ip, t0), None);
    }
}
