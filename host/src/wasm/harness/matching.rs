//! Matching a scenario's expectation against what a call produced (`templates/SCENARIO.md`,
//! *Matching*): `null` matches none, scalars must be equal, arrays match item by item with the
//! same length, objects are partial; `<key>-contains` checks substrings of the string `<key>`,
//! `<key>-json` parses the string `<key>` as JSON and matches that.

use serde_json::Value;

/// One difference between what was expected and what happened, at a path such as
/// `result.updates[0].status.label`.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub expected: String,
    pub got: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.path, self.expected, self.got
        )
    }
}

/// Appends to `problems` every way `actual` fails `expected`.
pub fn check(expected: &Value, actual: Option<&Value>, path: &str, problems: &mut Vec<Problem>) {
    let mut fail = |expected: String, actual: Option<&Value>| {
        problems.push(Problem {
            path: path.to_string(),
            expected,
            got: show(actual),
        })
    };
    match expected {
        Value::Null => {
            if !matches!(actual, None | Some(Value::Null)) {
                fail("none".into(), actual);
            }
        }
        Value::Array(items) => match actual {
            Some(Value::Array(got)) if got.len() == items.len() => {
                for (i, (e, a)) in items.iter().zip(got).enumerate() {
                    check(e, Some(a), &format!("{path}[{i}]"), problems);
                }
            }
            _ => fail(format!("{} item(s)", items.len()), actual),
        },
        Value::Object(map) => {
            let Some(Value::Object(got)) = actual else {
                return fail("an object".into(), actual);
            };
            for (key, value) in map {
                if let Some(field) = key.strip_suffix("-contains") {
                    let text = got.get(field);
                    let parts: Vec<&Value> = match value {
                        Value::Array(parts) => parts.iter().collect(),
                        one => vec![one],
                    };
                    for part in parts {
                        let found = match (text, part) {
                            (Some(Value::String(t)), Value::String(p)) => t.contains(p.as_str()),
                            _ => false,
                        };
                        if !found {
                            problems.push(Problem {
                                path: format!("{path}.{field}"),
                                expected: format!("to contain {}", show(Some(part))),
                                got: show(text),
                            });
                        }
                    }
                } else if let Some(field) = key.strip_suffix("-json") {
                    let text = got.get(field);
                    let parsed = match text {
                        Some(Value::String(t)) => serde_json::from_str::<Value>(t).ok(),
                        _ => None,
                    };
                    match parsed {
                        Some(v) => check(value, Some(&v), &format!("{path}.{field}"), problems),
                        None => problems.push(Problem {
                            path: format!("{path}.{field}"),
                            expected: "JSON".into(),
                            got: show(text),
                        }),
                    }
                } else {
                    check(value, got.get(key), &format!("{path}.{key}"), problems);
                }
            }
        }
        Value::Number(n) => {
            let equal = match actual {
                Some(Value::Number(m)) => n.as_f64() == m.as_f64(),
                _ => false,
            };
            if !equal {
                fail(show(Some(expected)), actual);
            }
        }
        scalar => {
            if actual != Some(scalar) {
                fail(show(Some(scalar)), actual);
            }
        }
    }
}

/// A value as shown in a problem: JSON, cut at 300 characters; `nothing` when absent.
pub fn show(v: Option<&Value>) -> String {
    match v {
        None => "nothing".into(),
        Some(v) => {
            let text = v.to_string();
            if text.chars().count() > 300 {
                format!("{}…", text.chars().take(300).collect::<String>())
            } else {
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(expected: Value, actual: Value) -> Vec<String> {
        let mut p = Vec::new();
        check(&expected, Some(&actual), "result", &mut p);
        p.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn objects_are_partial_and_paths_are_named() {
        let actual = json!({ "status": { "label": "Y", "state": "pending" }, "order-ref": "o-1" });
        assert!(problems(json!({ "order-ref": "o-1" }), actual.clone()).is_empty());
        assert_eq!(
            problems(json!({ "status": { "label": "X" } }), actual),
            ["result.status.label: expected \"X\", got \"Y\""]
        );
    }

    #[test]
    fn null_arrays_contains_and_json() {
        assert!(problems(json!({ "a": null }), json!({})).is_empty());
        assert_eq!(problems(json!({ "a": null }), json!({ "a": 1 })).len(), 1);
        assert_eq!(problems(json!([1, 2]), json!([1])).len(), 1);
        assert!(problems(
            json!({ "body-contains": ["ab", "cd"] }),
            json!({ "body": "abcd" })
        )
        .is_empty());
        assert_eq!(
            problems(json!({ "body-contains": "x" }), json!({ "body": "abcd" })).len(),
            1
        );
        assert!(problems(
            json!({ "body-json": { "k": 1 } }),
            json!({ "body": "{\"k\":1,\"j\":2}" })
        )
        .is_empty());
        assert_eq!(
            problems(
                json!({ "body-json": { "k": 2 } }),
                json!({ "body": "{\"k\":1}" })
            ),
            ["result.body.k: expected 2, got 1"]
        );
        assert!(problems(json!(1), json!(1.0)).is_empty());
    }
}
