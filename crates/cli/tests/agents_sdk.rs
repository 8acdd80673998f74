//! The official `anthropic` and `openai` Python SDKs (pinned in python/requirements-test.txt)
//! against a real `mlx-box up`: `POST /v1/messages` and `POST /v1/responses` through the one endpoint
//! (`[server] port`) and through a service's own port, on the REAL `mlx_lm.server` of the tiny thinking
//! model (the demo's environment, cached in MLXBOX_CACHE_DIR) — text, streamed and not, thinking on and
//! off, a wrong key (401 in each API's shape), another model (refused in each API's shape) — and on a
//! stand-in backend that calls tools (`python/fault_server.py --tools`: the tiny model cannot), whose
//! call comes back as `tool_use` / `function_call` and whose result is sent back.
//!
//! Nothing waits on a clock but the bounds: each SDK run is killed (its process group) after 300 s, and
//! the daemon and its servers are stopped by the harness whatever happens. 127.0.0.1 only.

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const KEY: &str = "sk-agents-sdk-one";
const OTHER_KEY: &str = "sk-agents-sdk-two";

/// `agents_sdk.py PHASE PORT KEY CHAT TOOL ARGS…` in its own process group, killed after 300 s: its JSON.
fn sdk(python: &str, phase: &str, port: u16, chat: &str, tool: &str, args: &[&str]) -> Value {
    let script = format!("{}/tests/agents_sdk.py", env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(python)
        .arg(&script)
        .args([phase, &port.to_string(), KEY, chat, tool])
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, 300 * S);
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "agents_sdk.py {phase} on port {port}: {status:?}\n{stderr}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}\n{stderr}"))
}

/// The types of a message's content blocks, or of a response's output items.
fn types(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|b| b["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The text of an Anthropic message's text blocks, and of its thinking blocks.
fn message_texts(m: &Value) -> (String, String) {
    let mut text = String::new();
    let mut thinking = String::new();
    for b in m["content"].as_array().unwrap() {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap()),
            Some("thinking") => thinking.push_str(b["thinking"].as_str().unwrap()),
            _ => {}
        }
    }
    (text, thinking)
}

/// The output text of a response, and whether it has a reasoning item.
fn response_text(r: &Value) -> (String, bool) {
    let mut text = String::new();
    let mut reasoning = false;
    for item in r["output"].as_array().unwrap() {
        match item["type"].as_str() {
            Some("message") => {
                for p in item["content"].as_array().unwrap() {
                    text.push_str(p["text"].as_str().unwrap_or_default());
                }
            }
            Some("reasoning") => reasoning = true,
            _ => {}
        }
    }
    (text, reasoning)
}

/// An Anthropic event stream in the order the API defines.
fn check_anthropic_events(what: &str, events: &Value) {
    let ev: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        // The SDK adds its own convenience events (`text`, `thinking`, `input_json`…).
        .filter(|e| {
            matches!(
                *e,
                "message_start"
                    | "content_block_start"
                    | "content_block_delta"
                    | "content_block_stop"
                    | "message_delta"
                    | "message_stop"
            )
        })
        .collect();
    assert_eq!(ev.first(), Some(&"message_start"), "{what}: {ev:?}");
    assert_eq!(
        &ev[ev.len() - 2..],
        &["message_delta", "message_stop"],
        "{what}: {ev:?}"
    );
    let starts = ev.iter().filter(|e| **e == "content_block_start").count();
    let stops = ev.iter().filter(|e| **e == "content_block_stop").count();
    assert!(starts >= 1 && starts == stops, "{what}: {ev:?}");
}

/// A Responses event stream: created first, completed last.
fn check_responses_events(what: &str, events: &Value) {
    let ev: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        &ev[..2],
        &["response.created", "response.in_progress"],
        "{what}"
    );
    assert_eq!(ev.last(), Some(&"response.completed"), "{what}: {ev:?}");
    let added = ev
        .iter()
        .filter(|e| **e == "response.output_item.added")
        .count();
    let done = ev
        .iter()
        .filter(|e| **e == "response.output_item.done")
        .count();
    assert!(added >= 1 && added == done, "{what}: {ev:?}");
}

/// A refusal the SDK raised: its class, status, and a body in the API's own shape.
fn check_refusal(what: &str, r: &Value, class: &str, status: u64, anthropic: bool) {
    assert_eq!(r["class"], class, "{what}: {r}");
    assert_eq!(r["status"], status, "{what}: {r}");
    let body = &r["body"];
    if anthropic {
        // The SDK hands over the whole body: {"type": "error", "error": {"type", "message"}}.
        assert_eq!(body["type"], "error", "{what}: {r}");
        let want = match status {
            401 => "authentication_error",
            404 => "not_found_error",
            _ => "invalid_request_error",
        };
        assert_eq!(body["error"]["type"], want, "{what}: {r}");
        assert!(body["error"]["message"].is_string(), "{what}: {r}");
    } else {
        // The OpenAI SDK hands over `error`'s object: {"message", "type", "param", "code"}.
        assert!(body["message"].is_string(), "{what}: {r}");
        assert_eq!(body["type"], "invalid_request_error", "{what}: {r}");
        if status == 401 {
            assert_eq!(body["code"], "invalid_api_key", "{what}: {r}");
        }
    }
}

/// Text through the tiny model: streamed and not, thinking off (no thinking at all) and on (a thinking
/// block / reasoning item before the answer); a wrong key and another model refused in each API's shape.
fn check_text(what: &str, v: &Value, other_model: (&str, u64)) {
    let (text, thinking) = message_texts(&v["a_text"]);
    assert!(
        !text.is_empty() && thinking.is_empty(),
        "{what} a_text: {}",
        v["a_text"]
    );
    assert!(!text.contains("<think>") && !text.contains("</think>"));
    assert_eq!(v["a_text"]["type"], "message");
    assert_eq!(v["a_text"]["role"], "assistant");
    assert!(v["a_text"]["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(v["a_text"]["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let (text, thinking) = message_texts(&v["a_think"]);
    assert!(
        !text.is_empty() && !thinking.is_empty(),
        "{what} a_think: {}",
        v["a_think"]
    );
    assert_eq!(types(&v["a_think"]["content"])[0], "thinking");
    for (k, think) in [("a_stream", false), ("a_stream_think", true)] {
        check_anthropic_events(&format!("{what} {k}"), &v[k]["events"]);
        let (text, thinking) = message_texts(&v[k]["final"]);
        assert!(!text.is_empty(), "{what} {k}: {}", v[k]);
        assert_eq!(!thinking.is_empty(), think, "{what} {k}: {}", v[k]);
    }
    check_refusal(
        &format!("{what} a_bad_key"),
        &v["a_bad_key"],
        "AuthenticationError",
        401,
        true,
    );
    check_refusal(
        &format!("{what} a_other_model"),
        &v["a_other_model"],
        &format!("{}Error", other_model.0),
        other_model.1,
        true,
    );

    let (text, reasoning) = response_text(&v["o_text"]);
    assert!(
        !text.is_empty() && !reasoning,
        "{what} o_text: {}",
        v["o_text"]
    );
    assert_eq!(v["o_text"]["object"], "response");
    assert_eq!(v["o_text"]["status"], "completed");
    let (text, reasoning) = response_text(&v["o_think"]);
    assert!(
        !text.is_empty() && reasoning,
        "{what} o_think: {}",
        v["o_think"]
    );
    for (k, think) in [("o_stream", false), ("o_stream_think", true)] {
        check_responses_events(&format!("{what} {k}"), &v[k]["events"]);
        let (text, reasoning) = response_text(&v[k]["final"]);
        assert!(!text.is_empty(), "{what} {k}: {}", v[k]);
        assert_eq!(reasoning, think, "{what} {k}: {}", v[k]);
    }
    check_refusal(
        &format!("{what} o_bad_key"),
        &v["o_bad_key"],
        "AuthenticationError",
        401,
        false,
    );
    check_refusal(
        &format!("{what} o_other_model"),
        &v["o_other_model"],
        &format!("{}Error", other_model.0),
        other_model.1,
        false,
    );
}

/// A tool the backend calls, as `tool_use` / `function_call` (whole and streamed), and its result sent
/// back in each API's shape reaching the backend as a tool message.
fn check_tools(what: &str, v: &Value) {
    let m = &v["a_tool"];
    assert_eq!(m["stop_reason"], "tool_use", "{what}: {m}");
    let used = m["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap_or_else(|| panic!("{what}: {m}"));
    assert_eq!(used["name"], "weather");
    assert_eq!(used["input"], serde_json::json!({"city": "Paris"}));
    assert!(!used["id"].as_str().unwrap().is_empty());
    let (text, _) = message_texts(&v["a_tool_result"]);
    assert_eq!(text, "The tool said: 18C and sunny", "{what}");
    check_anthropic_events(
        &format!("{what} a_tool_stream"),
        &v["a_tool_stream"]["events"],
    );
    let f = &v["a_tool_stream"]["final"];
    assert_eq!(f["stop_reason"], "tool_use", "{what}: {f}");
    let used = f["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap();
    assert_eq!(
        used["input"],
        serde_json::json!({"city": "Paris"}),
        "{what}"
    );

    let r = &v["o_tool"];
    let call = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap_or_else(|| panic!("{what}: {r}"));
    assert_eq!(call["name"], "weather");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, serde_json::json!({"city": "Paris"}));
    assert!(call["call_id"].is_string());
    let (text, _) = response_text(&v["o_tool_result"]);
    assert_eq!(text, "The tool said: 18C and sunny", "{what}");
    check_responses_events(
        &format!("{what} o_tool_stream"),
        &v["o_tool_stream"]["events"],
    );
    let ev = &v["o_tool_stream"]["events"];
    assert!(ev
        .as_array()
        .unwrap()
        .contains(&Value::from("response.function_call_arguments.done")));
    let f = &v["o_tool_stream"]["final"];
    let call = f["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap_or_else(|| panic!("{what}: {f}"));
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, serde_json::json!({"city": "Paris"}), "{what}");
}

#[test]
fn official_sdks_against_a_real_daemon() {
    let env = demo_env();
    let python = env.python.display().to_string();
    let model = env.models.join("chat").display().to_string();
    let (endpoint, chat_port, chat_back, tool_port, tool_back) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let config = format!(
        "[server]\nhost = \"127.0.0.1\"\nport = {endpoint}\napi_keys = [\"{KEY}\", \"{OTHER_KEY}\"]\n\
         [app]\npython = \"{python}\"\n\
         [services.chat]\nkind = \"chat\"\nport = {chat_port}\nbackend_port = {chat_back}\nmodel = \"{model}\"\n\
         temperature = 0.0\nready_timeout_s = 180\nenv = {{ HF_HUB_OFFLINE = \"1\" }}\n\
         [services.tools]\nkind = \"command\"\nport = {tool_port}\nbackend_port = {tool_back}\nprobe = \"chat\"\nmodel = \"tool-model\"\n\
         command = [\"python3\", \"{}\", \"--tools\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n",
        fault_server()
    );
    let mut d = Daemon::start(&config);
    d.wait_state("chat", "ready", 240 * S);
    d.wait_state("tools", "ready", 60 * S);

    // Through the one endpoint: the models by their service names; another model is not found.
    let v = sdk(&python, "text", endpoint, "chat", "tools", &[]);
    check_text("endpoint", &v, ("NotFound", 404));
    let v = sdk(&python, "tools", endpoint, "chat", "tools", &[]);
    check_tools("endpoint", &v);
    // Through the services' own ports: the model id and the name; another model is a bad request.
    let v = sdk(&python, "text", chat_port, &model, "-", &[]);
    check_text("service port", &v, ("BadRequest", 400));
    let v = sdk(&python, "tools", tool_port, "-", "tools", &[]);
    check_tools("service port", &v);

    // count_tokens: the server's own prompt_tokens for the same request, whatever it holds.
    for (what, port, chat) in [
        ("endpoint", endpoint, "chat"),
        ("service port", chat_port, &model),
    ] {
        let v = sdk(&python, "count", port, chat, "-", &[]);
        for case in ["plain", "system", "nothink"] {
            let pair = &v[case];
            assert!(pair[0].as_u64().unwrap() > 0, "{what} {case}: {v}");
            assert_eq!(pair[0], pair[1], "{what} {case}: counted vs served: {v}");
        }
        assert_ne!(v["plain"][0], v["system"][0], "{what}: {v}");
        check_refusal(what, &v["bad_key"], "AuthenticationError", 401, true);
    }

    // The Responses store: a chain by previous_response_id, GET and DELETE, another key sees nothing.
    let v = sdk(&python, "store_before", endpoint, "chat", "-", &[OTHER_KEY]);
    let (first, second) = (&v["first"], &v["second"]);
    assert_eq!(first["store"], true, "{v}");
    assert_eq!(second["previous_response_id"], first["id"], "{v}");
    assert_eq!(
        v["got"], *second,
        "GET returns the stored response as it was"
    );
    for k in ["gone", "missing", "other_key"] {
        check_refusal(k, &v[k], "NotFoundError", 404, false);
    }
    for k in ["gone_prev", "other_key_prev"] {
        check_refusal(k, &v[k], "NotFoundError", 404, false);
        assert_eq!(v[k]["body"]["param"], "previous_response_id", "{v}");
    }
    // Its input items, as the SDK lists them (auto-paging, oldest first): the first request's input, the
    // first's answer, then the second's input; a page of one is the newest and says there is more.
    let items = v["items"].as_array().unwrap();
    let roles: Vec<&str> = items.iter().filter_map(|i| i["role"].as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user"], "{v}");
    let part = |i: usize| {
        (
            &items[i]["content"][0]["type"],
            &items[i]["content"][0]["text"],
        )
    };
    assert_eq!(
        part(0),
        (&"input_text".into(), &"My name is Ada.".into()),
        "{v}"
    );
    assert_eq!(
        part(2),
        (&"input_text".into(), &"What is my name?".into()),
        "{v}"
    );
    assert_eq!(
        items[1]["id"], first["output"][0]["id"],
        "the first's answer as it was: {v}"
    );
    let ids: std::collections::BTreeSet<_> = items.iter().map(|i| i["id"].to_string()).collect();
    assert_eq!(ids.len(), 3, "every item has its own id: {v}");
    assert_eq!(v["items_page"]["data"][0]["id"], items[2]["id"], "{v}");
    assert_eq!(v["items_page"]["has_more"], true, "{v}");
    check_refusal(
        "items_other_key",
        &v["items_other_key"],
        "NotFoundError",
        404,
        false,
    );
    let prompt_of = |r: &Value| r["usage"]["input_tokens"].as_u64().unwrap();
    assert!(
        prompt_of(second) > prompt_of(first),
        "the second request carries the first conversation: {v}"
    );
    let kept = second["id"].as_str().unwrap().to_string();
    let unstored = v["unstored"].as_str().unwrap().to_string();

    // A daemon restart keeps what was stored (<state>/responses/); the conversation continues.
    d.terminate();
    assert!(d
        .state
        .join("responses")
        .join(format!("{kept}.json"))
        .exists());
    d.spawn();
    d.wait_state("chat", "ready", 240 * S);
    let v = sdk(
        &python,
        "store_after",
        endpoint,
        "chat",
        "-",
        &[&kept, &unstored],
    );
    assert_eq!(v["got"], *second, "after a restart: {v}");
    assert_eq!(v["third"]["previous_response_id"], second["id"]);
    assert!(prompt_of(&v["third"]) > prompt_of(second), "{v}");
    check_refusal("unstored", &v["unstored"], "NotFoundError", 404, false);
    d.terminate();
}
