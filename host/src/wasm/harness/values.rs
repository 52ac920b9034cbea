//! The component's values in the JSON shapes scenarios match against (`templates/SCENARIO.md`,
//! *Expectations*), and short one-line summaries for the trace.

use serde_json::{json, Value};

use crate::wasm::types::{CallError, Manifest, Package, RawHttp, Started, Status, StatusUpdate};

pub fn status(s: &Status) -> Value {
    json!({
        "state": s.state,
        "label": s.label,
        "report-url": s.report_url,
        "score": s.score,
        "verdict": s.verdict,
        "note": s.note.as_ref().map(|n| json!({ "text": n.text, "secret": n.secret })),
    })
}

pub fn started(s: &Started) -> Value {
    json!({ "order-ref": s.order_ref, "status": status(&s.status) })
}

pub fn callback(response: &RawHttp, updates: &[StatusUpdate]) -> Value {
    let headers: serde_json::Map<String, Value> = response
        .headers
        .iter()
        .map(|(k, v)| (k.to_lowercase(), Value::from(v.clone())))
        .collect();
    json!({
        "response": {
            "status": response.status,
            "headers": headers,
            "body": String::from_utf8_lossy(&response.body),
        },
        "updates": updates.iter().map(|u| json!({ "order-ref": u.order_ref, "status": status(&u.status) })).collect::<Vec<_>>(),
    })
}

pub fn packages(p: &[Package]) -> Value {
    Value::Array(
        p.iter()
            .map(|p| {
                let params: serde_json::Map<String, Value> = p
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                    .collect();
                json!({ "name": p.name, "default": p.is_default, "params": params })
            })
            .collect(),
    )
}

pub fn manifest(m: &Manifest) -> Value {
    json!({
        "id": m.id,
        "version": m.version,
        "display-name": m.display_name,
        "config-fields": m.config_fields.iter().map(|f| json!({
            "key": f.key, "description": f.description, "secret": f.secret, "required": f.required,
        })).collect::<Vec<_>>(),
        "outbound-hosts": m.outbound_hosts,
        "status-labels": m.status_labels,
        "default-trigger-stage": m.default_trigger_stage,
        "verdict-labels": m.verdict_labels,
        "limits": { "memory-mib": m.limits.memory_mib, "instances": m.limits.instances },
    })
}

/// A connector's own error (not the sandbox's: that is a trap); None for a sandbox failure.
pub fn error(e: &CallError) -> Option<Value> {
    let (kind, message) = match e {
        CallError::Config(m) => ("config", m),
        CallError::Transient(m) => ("transient", m),
        CallError::Rejected(m) => ("rejected", m),
        CallError::Invoke(_) => return None,
    };
    Some(json!({ "kind": kind, "message": message }))
}

/// `pending "Acme - Pending" report <url> ...` for a status value.
pub fn summarize_status(s: &Value) -> String {
    let mut out = format!("{} {}", s["state"].as_str().unwrap_or("?"), s["label"]);
    if let Some(u) = s["report-url"].as_str() {
        out.push_str(&format!(" report {u}"));
    }
    if let Some(n) = s["score"].as_f64() {
        out.push_str(&format!(" score {n}"));
    }
    if let Some(v) = s["verdict"].as_str() {
        out.push_str(&format!(" verdict {v:?}"));
    }
    if let Some(text) = s["note"]["text"].as_str() {
        let secret = if s["note"]["secret"] == true {
            "secret "
        } else {
            ""
        };
        let short: String = text.chars().take(60).collect();
        let more = if text.chars().count() > 60 { "…" } else { "" };
        out.push_str(&format!(" {secret}note {:?}", format!("{short}{more}")));
    }
    out
}

/// The statuses inside an `ok` value of a call (for the label check and the trace).
pub fn statuses(ok: &Value) -> Vec<(Option<String>, &Value)> {
    if let Some(s) = ok.get("status") {
        return vec![(ok["order-ref"].as_str().map(String::from), s)];
    }
    ok.get("updates")
        .and_then(Value::as_array)
        .map(|u| {
            u.iter()
                .map(|u| (u["order-ref"].as_str().map(String::from), &u["status"]))
                .collect()
        })
        .unwrap_or_default()
}
