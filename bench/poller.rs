//! Pollers for bench/poll.sh: N clients, each on its own connection, each asking for one URL
//! at a fixed rate (as a dashboard polls), for a fixed time. Prints one JSON line with the
//! latency percentiles, the response sizes and the failures.
//!
//!   poller --url URL [--token T] [--clients 50] [--rate 1] [--seconds 30]
//!
//! Requests are open-loop: client i starts at i/N of the first period and then keeps its own
//! schedule, so a slow answer delays only that client's next request, never the others'.
//! Latency is measured from the moment a request was due, so a request that had to wait for
//! the previous one to finish counts its wait (no coordinated omission).

use std::time::{Duration, Instant};

struct Args {
    url: String,
    token: Option<String>,
    clients: usize,
    rate: f64,
    seconds: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        token: None,
        clients: 50,
        rate: 1.0,
        seconds: 30.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--url" => a.url = value,
            "--token" => a.token = Some(value),
            "--clients" => a.clients = value.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => a.seconds = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.url.is_empty() {
        return Err("--url is required".into());
    }
    if a.clients == 0 || a.rate <= 0.0 || a.seconds <= 0.0 {
        return Err("--clients, --rate and --seconds must be positive".into());
    }
    Ok(a)
}

#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    bytes: u64,
    failures: u64,
    first_failure: Option<String>,
}

async fn client(i: usize, a: std::sync::Arc<Args>, start: Instant) -> Tally {
    let http = match fleetup::http_client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Tally {
                failures: 1,
                first_failure: Some(e.to_string()),
                ..Default::default()
            };
        }
    };
    let period = Duration::from_secs_f64(1.0 / a.rate);
    let end = start + Duration::from_secs_f64(a.seconds);
    let mut due = start + period.mul_f64(i as f64 / a.clients as f64);
    let mut t = Tally::default();
    while due < end {
        tokio::time::sleep_until(due.into()).await;
        let mut req = http.get(&a.url);
        if let Some(tok) = &a.token {
            req = req.bearer_auth(tok);
        }
        let outcome = match req.send().await {
            Ok(r) if r.status().is_success() => r.bytes().await.map_err(|e| e.to_string()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(body) => {
                t.latencies_ms.push(due.elapsed().as_secs_f64() * 1000.0);
                t.bytes += body.len() as u64;
            }
            Err(e) => {
                t.failures += 1;
                t.first_failure.get_or_insert(e);
            }
        }
        due += period;
        // A client that fell more than a period behind skips the requests it missed, as a
        // browser's timer would, instead of firing them back to back.
        let now = Instant::now();
        while due + period < now {
            due += period;
        }
    }
    t
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let a = match parse_args() {
        Ok(a) => std::sync::Arc::new(a),
        Err(e) => {
            eprintln!("poller: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now() + Duration::from_millis(100);
    let tasks: Vec<_> = (0..a.clients)
        .map(|i| tokio::spawn(client(i, a.clone(), start)))
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => {
                all.latencies_ms.extend(t.latencies_ms);
                all.bytes += t.bytes;
                all.failures += t.failures;
                if all.first_failure.is_none() {
                    all.first_failure = t.first_failure;
                }
            }
            Err(e) => {
                all.failures += 1;
                all.first_failure.get_or_insert(e.to_string());
            }
        }
    }
    let mut l = all.latencies_ms;
    l.sort_by(|x, y| x.total_cmp(y));
    let n = l.len();
    let out = serde_json::json!({
        "url": a.url,
        "clients": a.clients,
        "rate_per_client": a.rate,
        "seconds": a.seconds,
        "requests": n,
        "failures": all.failures,
        "first_failure": all.first_failure,
        "mean_bytes": if n > 0 { all.bytes / n as u64 } else { 0 },
        "p50_ms": percentile(&l, 50.0),
        "p90_ms": percentile(&l, 90.0),
        "p99_ms": percentile(&l, 99.0),
        "max_ms": l.last().copied().unwrap_or(f64::NAN),
    });
    println!("{out}");
}
