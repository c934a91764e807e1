//! Webhook guards: HMAC-SHA256 signatures, bearer tokens, per-path rate
//! limits, body size and event types.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::State;

/// Header carrying the signature unless the trigger names another.
pub const DEFAULT_SIGNATURE_HEADER: &str = "x-fuse-signature";

/// The header to read the signature from, when the trigger checks signatures.
pub(super) fn signature_header(inputs: &Value) -> Option<String> {
    let signed = inputs.get("secret").is_some_and(|v| !v.is_null())
        || inputs.get("credential").is_some_and(|v| !v.is_null());
    signed.then(|| {
        inputs
            .get("signature_header")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_SIGNATURE_HEADER)
            .to_ascii_lowercase()
    })
}

/// The shared secret: `secret` in the trigger, or a field of its `credential`.
fn secret(state: &State, inputs: &Value) -> Result<Option<String>, String> {
    if let Some(s) = inputs.get("secret").and_then(Value::as_str) {
        return Ok(Some(s.to_string()));
    }
    let Some(name) = inputs.get("credential").and_then(Value::as_str) else {
        return Ok(None);
    };
    let vault = state.vault().map_err(|e| e.to_string())?;
    let cred = vault.get(name).map_err(|e| e.to_string())?;
    crate::engine::creds::SECRET_FIELDS
        .iter()
        .find_map(|f| cred.field(f).map(str::to_string))
        .map(Some)
        .ok_or_else(|| format!("credential {name:?} has no value, token or key field"))
}

/// Checks `sha256=<hex HMAC-SHA256 of the body>` (or the bare hex).
pub(super) fn verify(
    state: &State,
    inputs: &Value,
    presented: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    let Some(secret) = secret(state, inputs)? else {
        return Ok(());
    };
    let header = signature_header(inputs).unwrap_or_default();
    let Some(presented) = presented else {
        return Err(format!(
            "this webhook needs a signature: send the header {header}: sha256=<hex HMAC-SHA256 of the body>"
        ));
    };
    let hex = presented.trim().trim_start_matches("sha256=");
    let bytes = decode_hex(hex).ok_or_else(|| format!("header {header} is not hex"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| "the webhook secret cannot be used".to_string())?;
    mac.update(body);
    mac.verify_slice(&bytes)
        .map_err(|_| format!("the signature in {header} does not match the body"))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Token bucket per webhook path (`rate_limit` per second, or
/// `rate_limit_per_minute` in bursts of as many): `None` lets the request
/// through, else how long until the next one would be; and the limit in words.
pub(super) fn throttle(state: &State, hook: &str, inputs: &Value) -> Option<(Duration, String)> {
    let number = |key| inputs.get(key).and_then(Value::as_f64);
    if let Some(rate) = number("rate_limit") {
        let wait = take(&state.hook_buckets, hook, rate)?;
        return Some((wait, format!("{rate} requests per second")));
    }
    let per_minute = number("rate_limit_per_minute")?;
    let wait = take_with_burst(&state.hook_buckets, hook, per_minute / 60.0, per_minute)?;
    Some((wait, format!("{per_minute} requests per minute")))
}

/// Whether the trigger wants a bearer token (`authentication_required`).
pub(super) fn requires_token(inputs: &Value) -> bool {
    inputs
        .get("authentication_required")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Whether `bearer` is the trigger's own `token` or an API token of this
/// daemon that may run workflows. Reads the token table: call it off the
/// async workers.
pub(super) fn token_accepted(
    state: &std::sync::Arc<State>,
    own: Option<&str>,
    bearer: Option<&str>,
) -> bool {
    let Some(presented) = bearer else {
        return false;
    };
    if own.is_some_and(|t| !t.is_empty() && constant_time_eq(t.as_bytes(), presented.as_bytes())) {
        return true;
    }
    state
        .tokens
        .check(state, presented)
        .is_some_and(|(_, scope)| scope >= crate::store::tokens::Scope::Run)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `max_payload_size` in bytes (the trigger gives KB).
pub(super) fn max_payload(inputs: &Value) -> Option<usize> {
    let kb = inputs.get("max_payload_size").and_then(Value::as_f64)?;
    (kb.is_finite() && kb >= 0.0).then_some((kb * 1024.0) as usize)
}

/// With `allowed_event_types`: the request's event type (the `X-Event-Type`
/// header, else the body's `event_type`) when it is not one of them, with
/// the list, as the refusal's message.
pub(super) fn event_refused(inputs: &Value, header: Option<&str>, body: &Value) -> Option<String> {
    let allowed: Vec<String> = match inputs.get("allowed_event_types")? {
        Value::String(list) => list
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => return None,
    };
    let given = header.or_else(|| body.get("event_type").and_then(Value::as_str));
    match given {
        Some(t) if allowed.iter().any(|a| a == t) => None,
        Some(t) => Some(format!(
            "event type {t:?} is not accepted here; allowed: {}",
            allowed.join(", ")
        )),
        None => Some(format!(
            "say the event type in the X-Event-Type header or the body's event_type; allowed: {}",
            allowed.join(", ")
        )),
    }
}

/// Token buckets by key (a webhook path, an API token's name).
pub(super) type Buckets = std::sync::Mutex<std::collections::HashMap<String, (f64, Instant)>>;

/// Takes one request from `key`'s bucket (refilled at `per_second`, bursts of
/// as many): `None` lets it through, else how long until the next one would.
pub(super) fn take(buckets: &Buckets, key: &str, per_second: f64) -> Option<Duration> {
    take_with_burst(buckets, key, per_second, per_second.max(1.0))
}

/// [`take`] with bursts of up to `burst` requests.
fn take_with_burst(buckets: &Buckets, key: &str, per_second: f64, burst: f64) -> Option<Duration> {
    if per_second <= 0.0 || !per_second.is_finite() {
        return None;
    }
    let mut buckets = buckets.lock().ok()?;
    let burst = burst.max(1.0);
    let now = Instant::now();
    let (tokens, at) = buckets.entry(key.to_string()).or_insert((burst, now));
    *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(burst);
    *at = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        None
    } else {
        Some(Duration::from_secs_f64((1.0 - *tokens) / per_second))
    }
}
