//! Lever's answers read straight from their bytes into the fields the flow uses, without a
//! `serde_json::Value` tree of the whole answer (an opportunity is read twice per event).
//!
//! As leniently as reading them from a `Value` was: a field of another type than expected reads
//! as absent, an array's elements of another type are skipped, and an answer that does not
//! decode at all (not JSON, `data` not an object, a field named twice in one object but a
//! picked one) reads as empty.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The fields of an opportunity the flow uses.
#[derive(Debug, Clone, Default)]
pub struct Opportunity {
    pub id: String,
    pub name: String,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub tags: Vec<String>,
    pub links: Vec<String>,
    pub posting_ids: Vec<String>,
}

/// `GET /opportunities/:id?expand=applications`'s answer as `Opportunity`; `id` stands in for an
/// answer without one.
pub fn opportunity(body: &[u8], id: &str) -> Opportunity {
    let d = serde_json::from_slice::<Answer>(body)
        .ok()
        .and_then(|a| a.data)
        .unwrap_or_default();
    Opportunity {
        id: d.id.0.unwrap_or_else(|| id.to_string()),
        name: d.name.0.unwrap_or_default(),
        emails: d.emails.0,
        phones: d.phones.0,
        tags: d.tags.0,
        links: d.links.0,
        posting_ids: d.applications.0,
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Data {
    id: Text,
    name: Text,
    emails: Texts,
    /// Each phone's `value`.
    phones: Fields<Value>,
    tags: Texts,
    links: Texts,
    /// Each expanded application's `posting`.
    applications: Fields<Posting>,
}

/// A string, or `None` for any other JSON value.
#[derive(Default)]
struct Text(Option<String>);

/// The strings of an array (other elements skipped); empty for anything else.
#[derive(Default)]
struct Texts(Vec<String>);

/// Of an array of objects, each object's string field `K::NAME` (objects without one, and
/// other elements, skipped); empty for anything else.
struct Fields<K>(Vec<String>, PhantomData<K>);

impl<K> Default for Fields<K> {
    fn default() -> Self {
        Fields(Vec::new(), PhantomData)
    }
}

/// The field [`Fields`] picks.
trait Field {
    const NAME: &'static str;
}

struct Value;
impl Field for Value {
    const NAME: &'static str = "value";
}

struct Posting;
impl Field for Posting {
    const NAME: &'static str = "posting";
}

/// Visits any JSON value: `T` from what it expects, `T::default()` from anything else (an
/// array's or object's contents skipped).
macro_rules! otherwise_default {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

/// Skips what is left of an array.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips what is left of an object.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
                Ok(Text(Some(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text, E> {
                Ok(Text(Some(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text, A::Error> {
                skip_seq(seq).map(|()| Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text, A::Error> {
                skip_map(map).map(|()| Text(None))
            }
            otherwise_default!();
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Texts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Texts, E> {
                Ok(Texts::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(text)) = seq.next_element()? {
                    out.extend(text);
                }
                Ok(Texts(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Texts, A::Error> {
                skip_map(map).map(|()| Texts::default())
            }
            otherwise_default!();
        }
        d.deserialize_any(V)
    }
}

/// One object's string field `K::NAME` (the last one, as a `Value` keeps it); `None` for
/// anything else.
struct Picked<K>(Option<String>, PhantomData<K>);

impl<'de, K: Field> Deserialize<'de> for Picked<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(PhantomData<K>);
        impl<'de, K: Field> Visitor<'de> for V<K> {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<String>, E> {
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<String>, A::Error> {
                skip_seq(seq).map(|()| None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
                let mut picked = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == K::NAME {
                        picked = map.next_value::<Text>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(picked)
            }
            otherwise_default!();
        }
        d.deserialize_any(V::<K>(PhantomData))
            .map(|picked| Picked(picked, PhantomData))
    }
}

impl<'de, K: Field> Deserialize<'de> for Fields<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(PhantomData<K>);
        impl<'de, K: Field> Visitor<'de> for V<K> {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Vec<String>, E> {
                Ok(Vec::new())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
                let mut out = Vec::new();
                while let Some(Picked::<K>(picked, _)) = seq.next_element()? {
                    out.extend(picked);
                }
                Ok(out)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<String>, A::Error> {
                skip_map(map).map(|()| Vec::new())
            }
            otherwise_default!();
        }
        d.deserialize_any(V::<K>(PhantomData))
            .map(|fields| Fields(fields, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the flow read from the answer's `Value` before: the reference the typed read keeps.
    fn from_value(body: &[u8], id: &str) -> Opportunity {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let d = &v["data"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let field = |v: &serde_json::Value, k: &str| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x[k].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Opportunity {
            id: d["id"].as_str().unwrap_or(id).to_string(),
            name: d["name"].as_str().unwrap_or_default().to_string(),
            emails: strings(&d["emails"]),
            phones: field(&d["phones"], "value"),
            tags: strings(&d["tags"]),
            links: strings(&d["links"]),
            posting_ids: field(&d["applications"], "posting"),
        }
    }

    fn same(a: &Opportunity, b: &Opportunity) -> bool {
        (
            &a.id,
            &a.name,
            &a.emails,
            &a.phones,
            &a.tags,
            &a.links,
            &a.posting_ids,
        ) == (
            &b.id,
            &b.name,
            &b.emails,
            &b.phones,
            &b.tags,
            &b.links,
            &b.posting_ids,
        )
    }

    #[test]
    fn an_opportunity_reads_as_its_value_did_however_odd_its_fields() {
        let bodies = [
            r#"{"data":{"id":"o1","name":"Ada \"L\" \u00e9","emails":["a@x","b@x"],
                "phones":[{"type":"mobile","value":"+1"},{"value":2},"p",{"value":"+3","value":"+4"}],
                "tags":["t1",null,"t2",{"x":1},[1]],"links":"nope","stage":"s",
                "applications":[{"id":"a1","posting":"p1","type":"posting"},"a2",{"posting":null}],
                "stageChanges":[{"toStageId":"s","updatedAt":1}],"archived":null}}"#,
            r#"{"data":{"name":7,"emails":{"a":1},"tags":true,"applications":["a1","a2"]}}"#,
            r#"{"data":null}"#,
            r#"{"data":"text"}"#,
            r#"{"other":1}"#,
            r#"[1,2]"#,
            "not json",
            "",
        ];
        for body in bodies {
            let typed = opportunity(body.as_bytes(), "fallback");
            let reference = from_value(body.as_bytes(), "fallback");
            assert!(
                same(&typed, &reference),
                "{body}: {typed:?} != {reference:?}"
            );
        }
        let first = opportunity(bodies[0].as_bytes(), "x");
        assert_eq!(first.phones, ["+1", "+4"]);
        assert_eq!(first.posting_ids, ["p1"]);
        assert_eq!(first.tags, ["t1", "t2"]);
    }
}
