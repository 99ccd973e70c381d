//! `fleetup notify deliveries`: the service's webhook delivery history, newest first.

use super::{Client, ClientError, segment};
use crate::api::DeliveryList;

/// The table of deliveries, only one rollout's with `rollout`.
pub async fn deliveries(c: &Client, rollout: Option<&str>) -> Result<String, ClientError> {
    let path = match rollout {
        Some(r) => format!("/notifications/deliveries?rollout={}", segment(r)),
        None => "/notifications/deliveries".to_string(),
    };
    let list: DeliveryList = c.get_json(&path).await?;
    Ok(table(&list))
}

fn table(list: &DeliveryList) -> String {
    let mut out = format!(
        "{:<7} {:<26} {:<19} {:<10} {:>8} {:>6}  {:<26} TARGET\n",
        "ID", "ROLLOUT", "KIND", "STATE", "ATTEMPTS", "STATUS", "UPDATED"
    );
    for d in &list.deliveries {
        out.push_str(&format!(
            "{:<7} {:<26} {:<19} {:<10} {:>8} {:>6}  {:<26} {} ({})\n",
            d.id,
            d.rollout_id,
            d.kind.as_str(),
            d.state.as_str(),
            d.attempts,
            d.last_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            d.updated_at,
            d.target,
            d.format.as_str(),
        ));
        if let Some(e) = &d.last_error {
            out.push_str(&format!("        {e}\n"));
        }
    }
    out.push_str(&format!("{} deliver(ies)\n", list.deliveries.len()));
    out
}
