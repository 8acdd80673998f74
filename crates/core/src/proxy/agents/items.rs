//! `GET /v1/responses/{id}/input_items`: the input items a stored response was given (the conversation
//! before its output, `previous_response_id`'s included), as OpenAI lists them: a page of at most
//! `limit` items in `order`, after the item `after`, each with an `id` and a message's text as typed
//! content parts.

use super::error::AgentError;
use serde_json::{json, Value};

/// What the query asks: `limit` (1–100, default 20), `order` (`desc`, the default, or `asc`), `after`
/// (an item id). `include` and anything else are accepted and ignored.
#[derive(Debug, PartialEq)]
pub struct Page {
    pub limit: usize,
    pub newest_first: bool,
    pub after: Option<String>,
}

impl Page {
    pub fn parse(query: Option<&str>) -> Result<Page, AgentError> {
        let mut page = Page {
            limit: 20,
            newest_first: true,
            after: None,
        };
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                "limit" => {
                    page.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| AgentError::Value {
                            path: "limit".into(),
                            value: excerpt(&v),
                        })?
                }
                "order" => {
                    page.newest_first = match &*v {
                        "desc" => true,
                        "asc" => false,
                        _ => {
                            return Err(AgentError::Value {
                                path: "order".into(),
                                value: excerpt(&v),
                            })
                        }
                    }
                }
                "after" => page.after = Some(v.into_owned()),
                _ => {}
            }
        }
        Ok(page)
    }
}

fn excerpt(v: &str) -> String {
    v.chars().take(64).collect()
}

/// The page of `inputs` (the stored conversation before the response's output) that `page` asks for.
/// Items the client sent without an id get one made from the response's id and their position (`_in`,
/// apart from the output items' `msg_<id>_<n>`), so the same item has the same id on every read (and
/// `after` can name it).
pub fn list(response_id: &str, inputs: &[Value], page: &Page) -> Result<Value, AgentError> {
    let stem = response_id.strip_prefix("resp_").unwrap_or(response_id);
    let mut all: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, item)| listed(item, &format!("{stem}_in{i}")))
        .collect();
    if page.newest_first {
        all.reverse();
    }
    let start = match &page.after {
        None => 0,
        Some(after) => {
            all.iter()
                .position(|i| i["id"].as_str() == Some(after.as_str()))
                .ok_or_else(|| AgentError::Value {
                    path: "after".into(),
                    value: excerpt(after),
                })?
                + 1
        }
    };
    let rest = all.len().saturating_sub(start);
    let data: Vec<Value> = all.into_iter().skip(start).take(page.limit).collect();
    Ok(json!({
        "object": "list",
        "first_id": data.first().map(|i| i["id"].clone()),
        "last_id": data.last().map(|i| i["id"].clone()),
        "has_more": rest > data.len(),
        "data": data,
    }))
}

/// One item as OpenAI lists it: an `id`; a message's string content as one text part (`input_text`,
/// or `output_text` for the assistant's own earlier turns) with a `status`.
fn listed(item: &Value, made_id: &str) -> Value {
    let mut item = match item {
        Value::Object(m) => m.clone(),
        other => return json!({"id": made_id, "type": "unknown", "value": other}),
    };
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    let is_message = kind == "message";
    if !item.contains_key("id") || !item["id"].is_string() {
        let prefix = match kind {
            "message" => "msg",
            "function_call" => "fc",
            "function_call_output" => "fco",
            "reasoning" => "rs",
            _ => "item",
        };
        item.insert("id".into(), json!(format!("{prefix}_{made_id}")));
    }
    if is_message {
        item.entry("type").or_insert_with(|| json!("message"));
        item.entry("status").or_insert_with(|| json!("completed"));
        if let Some(Value::String(text)) = item.get("content") {
            let part = if item.get("role").and_then(Value::as_str) == Some("assistant") {
                json!({"type": "output_text", "text": text, "annotations": []})
            } else {
                json!({"type": "input_text", "text": text})
            };
            item.insert("content".into(), json!([part]));
        }
    }
    Value::Object(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> Vec<Value> {
        vec![
            json!({"role": "user", "content": "first"}),
            json!({"type": "message", "role": "assistant", "content": "reply", "id": "msg_kept"}),
            json!({"type": "function_call_output", "call_id": "c1", "output": "42"}),
        ]
    }

    #[test]
    fn lists_newest_first_with_stable_ids_and_typed_parts() {
        let page = Page::parse(None).unwrap();
        let l = list("resp_abc", &conv(), &page).unwrap();
        let ids: Vec<&str> = l["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["fco_abc_in2", "msg_kept", "msg_abc_in0"]);
        assert_eq!(l["first_id"], "fco_abc_in2");
        assert_eq!(l["last_id"], "msg_abc_in0");
        assert_eq!(l["has_more"], false);
        assert_eq!(
            l["data"][2]["content"],
            json!([{"type": "input_text", "text": "first"}])
        );
        assert_eq!(l["data"][2]["type"], "message");
        assert_eq!(l["data"][1]["content"][0]["type"], "output_text");
        // The same read gives the same ids.
        assert_eq!(l, list("resp_abc", &conv(), &page).unwrap());
    }

    #[test]
    fn pages_with_limit_order_and_after() {
        let page = Page::parse(Some("limit=1&order=asc&include[]=x&unknown=1")).unwrap();
        assert_eq!((page.limit, page.newest_first), (1, false));
        let l = list("resp_abc", &conv(), &page).unwrap();
        assert_eq!(l["data"][0]["id"], "msg_abc_in0");
        assert_eq!(l["has_more"], true);
        let next = Page::parse(Some("limit=5&order=asc&after=msg_abc_in0")).unwrap();
        let l = list("resp_abc", &conv(), &next).unwrap();
        assert_eq!(l["data"].as_array().unwrap().len(), 2);
        assert_eq!(l["has_more"], false);
        let empty = list("resp_abc", &[], &Page::parse(None).unwrap()).unwrap();
        assert_eq!(empty["first_id"], Value::Null);
    }

    #[test]
    fn refuses_a_bad_query_by_its_field() {
        for (q, field) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=x", "limit"),
            ("order=sideways", "order"),
        ] {
            assert_eq!(
                Page::parse(Some(q)).unwrap_err().param(),
                Some(field),
                "{q}"
            );
        }
        let page = Page::parse(Some("after=nope")).unwrap();
        let e = list("resp_abc", &conv(), &page).unwrap_err();
        assert_eq!(e.param(), Some("after"));
    }
}
