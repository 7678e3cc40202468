//! The bench workload's rows, shared by the benches (`#[path]`-included: not a bench itself).

use serde_json::{Value, json};

/// Row `i` of the workload's row template.
pub fn row_json(i: usize) -> Value {
    json!({
        "event_name": "Order Completed",
        "page_name": "Pricing",
        "screen_name": "Home",
        "user_id": format!("user-{i}"),
        "anonymous_id": format!("anon-{i}"),
        "account_id": format!("acct-{}", i % 1000),
        "company": "Initech",
        "ts": "2024-05-01T12:00:00.000Z",
        "plan": if i % 2 == 1 { "pro" } else { "free" },
        "amount": i as f64 * 1.5,
        "sku": format!("SKU-{}", i % 97),
        "email": format!("u{i}@example.com"),
        "ip": "203.0.113.9",
        "city": "Paris",
        "lat": "48.85",
        "url": "https://example.com/pricing",
        "title": "Pricing",
        "w": 1080,
        "h": "1920"
    })
}

/// The bytes of `serde_json::to_vec(&row_json(i))` (with `"changed": true` added when
/// `changed`), written directly: the sync bench's client makes a million of them, on the cores
/// the service it measures runs on.
#[allow(dead_code)]
pub fn row_bytes(i: usize, changed: bool, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let plan = if i % 2 == 1 { "pro" } else { "free" };
    let _ = write!(
        out,
        "{{\"event_name\":\"Order Completed\",\"page_name\":\"Pricing\",\"screen_name\":\"Home\",\
         \"user_id\":\"user-{i}\",\"anonymous_id\":\"anon-{i}\",\"account_id\":\"acct-{}\",\
         \"company\":\"Initech\",\"ts\":\"2024-05-01T12:00:00.000Z\",\"plan\":\"{plan}\",\
         \"amount\":",
        i % 1000
    );
    let _ = serde_json::to_writer(&mut *out, &(i as f64 * 1.5));
    let _ = write!(
        out,
        ",\"sku\":\"SKU-{}\",\"email\":\"u{i}@example.com\",\"ip\":\"203.0.113.9\",\
         \"city\":\"Paris\",\"lat\":\"48.85\",\"url\":\"https://example.com/pricing\",\
         \"title\":\"Pricing\",\"w\":1080,\"h\":\"1920\"",
        i % 97
    );
    if changed {
        out.extend_from_slice(b",\"changed\":true");
    }
    out.push(b'}');
}
