//! The pure half of a delivery: which event is worth a notification, the body in each format,
//! its signature, and what to do after an attempt. No socket, no clock.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use super::{Format, NotificationKind};
use crate::rollout::model::{Event, EventKind};

/// The notification an event is, if it is one. A `started` event carrying `start_at` is the
/// end of a scheduled wait (the engine adds it only then).
pub(crate) fn kind_of(ev: &Event) -> Option<NotificationKind> {
    Some(match ev.kind {
        EventKind::Started => {
            let scheduled = ev
                .data
                .as_ref()
                .is_some_and(|d| d.get("start_at").is_some());
            if scheduled {
                NotificationKind::ScheduleReached
            } else {
                NotificationKind::RolloutStarted
            }
        }
        EventKind::AwaitingApproval => NotificationKind::AwaitingApproval,
        EventKind::WaveFinished => NotificationKind::WaveDone,
        EventKind::Halted => NotificationKind::Halted,
        EventKind::DeviceFailed => NotificationKind::DeviceFailed,
        EventKind::DeviceRolledBack => NotificationKind::DeviceRolledBack,
        EventKind::Completed | EventKind::CompletedWithFailures | EventKind::Aborted => {
            NotificationKind::Finished
        }
        _ => return None,
    })
}

/// What every format says, taken from the event and its rollout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Notification {
    /// The event's id: the same for every target of one notification.
    pub id: i64,
    pub kind: NotificationKind,
    pub rollout_id: String,
    pub rollout_name: String,
    pub device: Option<String>,
    pub wave: Option<u64>,
    /// How the rollout ended (`completed`, `completed_with_failures`, `aborted`) for
    /// `finished`; the event's own kind otherwise.
    pub event: String,
    pub message: String,
    pub at: String,
}

impl Notification {
    pub(crate) fn of(ev: &Event, kind: NotificationKind, rollout_name: &str) -> Notification {
        Notification {
            id: ev.id,
            kind,
            rollout_id: ev.rollout_id.to_string(),
            rollout_name: rollout_name.to_string(),
            device: ev.device.clone(),
            wave: ev
                .data
                .as_ref()
                .and_then(|d| d.get("wave"))
                .and_then(Value::as_u64),
            event: ev.kind.as_str().to_string(),
            message: ev.message.clone(),
            at: ev.at.clone(),
        }
    }

    /// One line for a person: `fleetup · core-upgrade (r-…) · wave_done: wave 1 finished`.
    fn headline(&self) -> String {
        let subject = match &self.device {
            Some(d) => format!("{} on {d}", self.kind),
            None => self.kind.to_string(),
        };
        format!(
            "fleetup · {} ({}) · {subject}",
            self.rollout_name, self.rollout_id
        )
    }
}

/// The request body for a target of this format.
pub(crate) fn body(format: Format, n: &Notification) -> Vec<u8> {
    let value = match format {
        Format::Json => json!({
            "id": n.id,
            "kind": n.kind,
            "event": n.event,
            "rollout": n.rollout_id,
            "rollout_name": n.rollout_name,
            "device": n.device,
            "wave": n.wave,
            "message": n.message,
            "at": n.at,
        }),
        // Slack's incoming webhooks take `text` (mrkdwn); `*…*` is bold.
        Format::Slack => json!({
            "text": format!("*{}*\n{}", n.headline(), n.message),
        }),
        // Teams incoming webhooks (Workflows) take a message with one Adaptive Card.
        Format::Teams => {
            let mut facts = vec![
                json!({"title": "Rollout", "value": format!("{} ({})", n.rollout_name, n.rollout_id)}),
                json!({"title": "Event", "value": n.kind}),
            ];
            if let Some(d) = &n.device {
                facts.push(json!({"title": "Device", "value": d}));
            }
            if let Some(w) = n.wave {
                facts.push(json!({"title": "Wave", "value": w.to_string()}));
            }
            facts.push(json!({"title": "At", "value": n.at}));
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            {"type": "TextBlock", "size": "Medium", "weight": "Bolder",
                             "text": n.headline(), "wrap": true},
                            {"type": "TextBlock", "text": n.message, "wrap": true},
                            {"type": "FactSet", "facts": facts},
                        ],
                    },
                }],
            })
        }
    };
    // A `Value` always serializes.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `X-Fleetup-Signature`: `sha256=` and the hex HMAC-SHA256 of the body under the secret.
pub(crate) fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: the error cannot happen.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The receiver answered with this status.
    Status(u16),
    /// No answer: connection refused or reset, timed out, … (the text says which).
    NoAnswer(String),
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    Delivered,
    /// Try again after this long.
    Retry(Duration),
    /// Give up: refused, or the attempts are spent.
    Failed,
}

/// Delays double from `first`, up to five minutes.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// After attempt number `attempt` (1-based) of `attempts`: 2xx is delivered; a 4xx other than
/// 408 and 429 is final (the receiver refuses this request); anything else is retried with a
/// delay doubling from `first`.
pub(crate) fn after(attempt: u32, attempts: u32, outcome: &Attempt, first: Duration) -> Next {
    let retryable = match outcome {
        Attempt::Status(s) if (200..300).contains(s) => return Next::Delivered,
        Attempt::Status(s) => !(400..500).contains(s) || matches!(s, 408 | 429),
        Attempt::NoAnswer(_) => true,
    };
    if !retryable || attempt >= attempts {
        return Next::Failed;
    }
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    Next::Retry(first.saturating_mul(factor).min(MAX_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::model::RolloutId;

    fn event(kind: EventKind, device: Option<&str>, data: Option<Value>) -> Event {
        Event {
            id: 42,
            rollout_id: RolloutId::new("r-20261205-010000-abcd"),
            at: "2026-12-05T01:00:00Z".into(),
            device: device.map(str::to_string),
            kind,
            step: None,
            message: "sw1 failed: copy: no space left".into(),
            data,
        }
    }

    fn notification(kind: EventKind, device: Option<&str>, data: Option<Value>) -> Notification {
        let ev = event(kind, device, data);
        Notification::of(&ev, kind_of(&ev).unwrap(), "access-switches")
    }

    #[test]
    fn events_map_to_notifications() {
        let k = |kind, data| kind_of(&event(kind, None, data));
        assert_eq!(
            k(EventKind::Started, None),
            Some(NotificationKind::RolloutStarted)
        );
        assert_eq!(
            k(
                EventKind::Started,
                Some(json!({"start_at": "2026-12-05T01:00:00Z"}))
            ),
            Some(NotificationKind::ScheduleReached)
        );
        assert_eq!(
            k(EventKind::WaveFinished, None),
            Some(NotificationKind::WaveDone)
        );
        assert_eq!(k(EventKind::Halted, None), Some(NotificationKind::Halted));
        assert_eq!(
            k(EventKind::AwaitingApproval, None),
            Some(NotificationKind::AwaitingApproval)
        );
        assert_eq!(
            k(EventKind::DeviceFailed, None),
            Some(NotificationKind::DeviceFailed)
        );
        assert_eq!(
            k(EventKind::DeviceRolledBack, None),
            Some(NotificationKind::DeviceRolledBack)
        );
        for end in [
            EventKind::Completed,
            EventKind::CompletedWithFailures,
            EventKind::Aborted,
        ] {
            assert_eq!(k(end, None), Some(NotificationKind::Finished));
        }
        for quiet in [
            EventKind::StepStarted,
            EventKind::StepDone,
            EventKind::Created,
            EventKind::WaveStarted,
        ] {
            assert_eq!(k(quiet, None), None);
        }
    }

    #[test]
    fn json_body_carries_the_event() {
        let n = notification(EventKind::WaveFinished, None, Some(json!({"wave": 1})));
        let v: Value = serde_json::from_slice(&body(Format::Json, &n)).unwrap();
        assert_eq!(v["id"], 42);
        assert_eq!(v["kind"], "wave_done");
        assert_eq!(v["rollout"], "r-20261205-010000-abcd");
        assert_eq!(v["wave"], 1);
        assert_eq!(v["device"], Value::Null);
        assert_eq!(v["at"], "2026-12-05T01:00:00Z");
    }

    #[test]
    fn slack_body_is_an_incoming_webhook_text() {
        let n = notification(EventKind::DeviceFailed, Some("sw1"), None);
        let v: Value = serde_json::from_slice(&body(Format::Slack, &n)).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 1, "{v}");
        let text = v["text"].as_str().unwrap();
        assert!(text.starts_with("*fleetup · access-switches"), "{text}");
        assert!(text.contains("device_failed on sw1"), "{text}");
        assert!(text.contains("no space left"), "{text}");
    }

    #[test]
    fn teams_body_is_a_message_with_an_adaptive_card() {
        let n = notification(EventKind::DeviceRolledBack, Some("sw1"), None);
        let v: Value = serde_json::from_slice(&body(Format::Teams, &n)).unwrap();
        assert_eq!(v["type"], "message");
        let att = &v["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &att["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert!(card["version"].as_str().is_some());
        let blocks = card["body"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "TextBlock");
        assert!(
            blocks[0]["text"]
                .as_str()
                .unwrap()
                .contains("device_rolled_back on sw1")
        );
        let facts = blocks[2]["facts"].as_array().unwrap();
        assert!(
            facts
                .iter()
                .any(|f| f["title"] == "Device" && f["value"] == "sw1")
        );
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_double_and_refusals_are_final() {
        let s = Duration::from_secs(1);
        assert_eq!(after(1, 5, &Attempt::Status(204), s), Next::Delivered);
        assert_eq!(after(1, 5, &Attempt::Status(500), s), Next::Retry(s));
        assert_eq!(
            after(2, 5, &Attempt::NoAnswer("timed out".into()), s),
            Next::Retry(2 * s)
        );
        assert_eq!(after(3, 5, &Attempt::Status(503), s), Next::Retry(4 * s));
        assert_eq!(after(2, 5, &Attempt::Status(429), s), Next::Retry(2 * s));
        assert_eq!(after(1, 5, &Attempt::Status(404), s), Next::Failed);
        assert_eq!(after(1, 5, &Attempt::Status(400), s), Next::Failed);
        assert_eq!(after(5, 5, &Attempt::Status(500), s), Next::Failed);
        assert_eq!(
            after(19, 30, &Attempt::Status(500), s),
            Next::Retry(MAX_DELAY)
        );
    }
}
