use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

/// A request with no stored conversation to continue.
fn translate(api: Api, body: &[u8]) -> Result<Translated, AgentError> {
    super::translate(api, body, &|_| None)
}

fn chat_of(api: Api, req: &Value) -> (Value, Reply) {
    let t = translate(api, req.to_string().as_bytes()).unwrap();
    let (bytes, reply) = t.into_chat("abc", 1_700_000_000, "default/model", true);
    (serde_json::from_slice(&bytes).unwrap(), reply)
}

/// The SSE events of a translated stream: (event name, data).
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).expect("the translator writes UTF-8");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).expect("each data line is JSON");
                }
            }
            (name, data)
        })
        .collect()
}

fn sse(chunks: &[Value]) -> Vec<u8> {
    let mut out = String::new();
    for c in chunks {
        out.push_str(&format!("data: {c}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

fn delta(d: Value) -> Value {
    json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": null}]})
}

fn finish(reason: &str) -> Value {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}

fn usage(p: u64, c: u64) -> Value {
    json!({"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})
}

fn run(reply: &Reply, chunks: &[&[u8]], cut: bool) -> Vec<u8> {
    let (mut tr, mut out) = reply.translator();
    for c in chunks {
        out.extend(tr.push(c));
    }
    out.extend(if cut { tr.fail("cut") } else { tr.finish() });
    out
}

/// Every field of a Messages request the issue lists reaches the chat request.
#[test]
fn an_anthropic_request_becomes_a_chat_request() {
    let req = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Use tools."}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should call the tool.", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18°C"}]},
                {"type": "text", "text": "And this picture?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "server_tool_use_result_of_the_future", "x": 1},
            ]},
        ],
        "tools": [
            {"name": "weather", "description": "Weather now", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        ],
        "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": true},
        "temperature": 0.5, "top_p": 0.9, "top_k": 40,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u1"},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "stream": true,
        "service_tier": "auto", "context_management": {"edits": []}, "betas": ["x"],
    });
    let (chat, reply) = chat_of(Api::Anthropic, &req);
    assert_eq!(
        chat,
        json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "system", "content": "Be brief.\n\nUse tools."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "Let me check.", "reasoning_content": "I should call the tool.",
                 "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
                {"role": "user", "content": [
                    {"type": "text", "text": "And this picture?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ]},
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "parallel_tool_calls": false,
            "max_tokens": 1024,
            "temperature": 0.5, "top_p": 0.9, "top_k": 40,
            "stop": ["END"],
            "stream": true,
            "stream_options": {"include_usage": true},
            "chat_template_kwargs": {"enable_thinking": true},
        })
    );
    assert!(reply.stream());
    for (choice, want) in [
        ("auto", json!("auto")),
        ("any", json!("required")),
        ("none", json!("none")),
    ] {
        let (chat, _) = chat_of(
            Api::Anthropic,
            &json!({"messages": [], "tool_choice": {"type": choice}}),
        );
        assert_eq!(chat["tool_choice"], want);
    }
    // Thinking off: the switch goes off; the operator's off wins over a client's on.
    let off = json!({"messages": [], "thinking": {"type": "disabled"}});
    assert_eq!(
        chat_of(Api::Anthropic, &off).0["chat_template_kwargs"],
        json!({"enable_thinking": false})
    );
    let on = json!({"messages": [], "thinking": {"type": "enabled", "budget_tokens": 1024}});
    let (bytes, _) = translate(Api::Anthropic, on.to_string().as_bytes())
        .unwrap()
        .into_chat("x", 0, "m", false);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(v.get("chat_template_kwargs").is_none());
    // No thinking field: the service's default, and a model with no name gets the service's.
    let (chat, _) = chat_of(
        Api::Anthropic,
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(
        chat,
        json!({"messages": [{"role": "user", "content": "hi"}]})
    );
}

/// A whole chat completion becomes a `message`: think spans and reasoning fields are thinking blocks
/// (none when thinking is off), tool calls are `tool_use` blocks with their JSON input.
#[test]
fn a_chat_completion_becomes_an_anthropic_message() {
    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "org/m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant",
            "content": "<think>Need the weather.</think>\n\nChecking.",
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}],
        }}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27, "prompt_tokens_details": {"cached_tokens": 4}},
    });
    let (_, reply) = chat_of(
        Api::Anthropic,
        &json!({"model": "claude-x", "messages": []}),
    );
    let msg: Value = serde_json::from_slice(
        &reply
            .whole(completion.to_string().as_bytes(), false)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        msg,
        json!({
            "id": "msg_abc", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "Need the weather.", "signature": ""},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_9", "name": "weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 16, "output_tokens": 7, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0},
        })
    );
    let (_, off) = chat_of(
        Api::Anthropic,
        &json!({"messages": [], "thinking": {"type": "disabled"}, "stop_sequences": ["STOP"]}),
    );
    let reply_with = |content: &str, reason: &str, extra: Value| -> Value {
        let mut c = json!({"choices": [{"index": 0, "finish_reason": reason,
            "message": {"role": "assistant", "content": content, "reasoning_content": "hmm"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2}});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                c["choices"][0][k] = v.clone();
            }
        }
        serde_json::from_slice(&off.whole(c.to_string().as_bytes(), false).unwrap()).unwrap()
    };
    let m = reply_with("<think>x</think>Hi", "stop", json!({}));
    assert_eq!(
        m["content"],
        json!([{"type": "text", "text": "Hi"}]),
        "no thinking"
    );
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(
        reply_with("Hi", "length", json!({}))["stop_reason"],
        "max_tokens"
    );
    let m = reply_with("Hi", "stop", json!({"stop_reason": "STOP"}));
    assert_eq!(
        (m["stop_reason"].as_str(), m["stop_sequence"].as_str()),
        (Some("stop_sequence"), Some("STOP"))
    );
    let m = reply_with("Hi STOP", "stop", json!({}));
    assert_eq!(
        m["stop_reason"], "stop_sequence",
        "left in place by the server"
    );
    assert!(off.whole(b"{\"choices\": []}", false).is_err());
    assert!(off.whole(b"not json", false).is_err());
}

/// Anthropic's stream, event by event.
#[test]
fn a_chat_stream_becomes_anthropics_event_sequence() {
    let (_, reply) = chat_of(
        Api::Anthropic,
        &json!({"model": "claude-x", "messages": [], "stream": true}),
    );
    let stream = sse(&[
        delta(json!({"role": "assistant", "content": ""})),
        delta(json!({"reasoning": "Think"})),
        delta(json!({"content": "Hello"})),
        delta(json!({"content": " there"})),
        delta(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
        ),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]})),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})),
        finish("tool_calls"),
        usage(5, 6),
    ]);
    let ev = events(&run(&reply, &[&stream], false));
    let names: Vec<&str> = ev.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[0].1["message"]["id"], "msg_abc");
    assert_eq!(ev[0].1["message"]["model"], "claude-x");
    assert_eq!(
        ev[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
    );
    assert_eq!(
        ev[2].1,
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Think"}})
    );
    assert_eq!(
        ev[5].1,
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hello"}})
    );
    assert_eq!(
        ev[8].1,
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}})
    );
    assert_eq!(
        ev[10].1,
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "1}"}})
    );
    assert_eq!(
        ev[12].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"input_tokens": 5, "output_tokens": 6, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}})
    );
    // Cut mid tool call: the open block is stopped, then the error event; nothing after.
    let cut = &stream[..stream.len() / 2 + 40];
    let ev = events(&run(&reply, &[cut], false));
    let last = ev.last().unwrap();
    assert_eq!(last.0, "error");
    assert_eq!(last.1["error"]["type"], "api_error");
    assert_eq!(ev[ev.len() - 2].0, "content_block_stop");
    // A backend error in the stream.
    let bad = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"out of memory\"}}\n\n";
    let ev = events(&run(&reply, &[bad], false));
    assert_eq!(
        ev.last().unwrap().1["error"]["message"],
        "the backend failed: out of memory"
    );
    // A JSON reply to a client that asked for a stream: the whole stream at once.
    let (mut tr, mut out) = reply.translator();
    out.extend(tr.completion(br#"{"choices":[{"index":0,"finish_reason":"stop","message":{"content":"Hi"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#));
    let names: Vec<String> = events(&out).into_iter().map(|e| e.0).collect();
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert_eq!(tr.ping(), None, "no ping once a block started");
    let (tr, _) = reply.translator();
    assert!(tr.ping().is_some(), "a ping while nothing came");
}

/// Every field of a Responses request the issue lists reaches the chat request.
#[test]
fn a_responses_request_becomes_a_chat_request() {
    let req = json!({
        "model": "gpt-5-codex",
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Repo rules."}]},
            {"role": "user", "content": [{"type": "input_text", "text": "Look:"}, {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "auto"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Plan."}], "encrypted_content": "zzz"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Running ls.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {"type": "item_reference", "id": "x"},
        ],
        "tools": [
            {"type": "function", "name": "shell", "description": "Run", "parameters": {"type": "object"}, "strict": false},
            {"type": "web_search"},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "max_output_tokens": 500,
        "temperature": 0.2, "top_p": 0.8,
        "reasoning": {"effort": "high", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}, "verbosity": "low"},
        "stream": true,
        "store": false, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "service_tier": "auto",
    });
    let (chat, reply) = chat_of(Api::Responses, &req);
    assert_eq!(
        chat,
        json!({
            "model": "gpt-5-codex",
            "messages": [
                {"role": "system", "content": "You are a coding agent."},
                {"role": "system", "content": "Repo rules."},
                {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
                {"role": "assistant", "content": "Running ls.", "reasoning_content": "Plan.",
                 "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "shell", "arguments": "{\"cmd\":\"ls\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
            ],
            "tools": [{"type": "function", "function": {"name": "shell", "description": "Run", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "max_tokens": 500,
            "temperature": 0.2, "top_p": 0.8,
            "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}},
            "stream": true,
            "stream_options": {"include_usage": true},
            "chat_template_kwargs": {"enable_thinking": true},
        })
    );
    assert!(reply.stream());
    let (chat, _) = chat_of(
        Api::Responses,
        &json!({"input": "hi", "reasoning": {"effort": "none"}, "tool_choice": {"type": "function", "name": "f"}}),
    );
    assert_eq!(chat["messages"], json!([{"role": "user", "content": "hi"}]));
    assert_eq!(
        chat["chat_template_kwargs"],
        json!({"enable_thinking": false})
    );
    assert_eq!(
        chat["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    // A function call with no assistant message before it is an assistant turn of its own.
    let (chat, _) = chat_of(
        Api::Responses,
        &json!({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "ok"}, {"type": "input_image", "image_url": "https://x/y.png"}]}]}),
    );
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "ok"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        ])
    );
    let err = translate(
        Api::Responses,
        br#"{"input":"hi","previous_response_id":"resp_1"}"#,
    )
    .unwrap_err();
    assert_eq!(err.param(), Some("previous_response_id"));
}

/// A whole chat completion becomes a Response object, and its stream the Responses events.
#[test]
fn a_chat_reply_becomes_a_response() {
    let req = json!({"model": "gpt-x", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}], "metadata": {"k": "v"}});
    let (_, reply) = chat_of(Api::Responses, &req);
    let completion = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "content": "Sure.", "reasoning_content": "R",
        "tool_calls": [{"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4}});
    let r: Value = serde_json::from_slice(
        &reply
            .whole(completion.to_string().as_bytes(), false)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(r["id"], "resp_abc");
    assert_eq!(r["object"], "response");
    assert_eq!(r["created_at"], 1_700_000_000);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "gpt-x");
    assert_eq!(r["metadata"], json!({"k": "v"}));
    assert_eq!(r["tools"][0]["name"], "f");
    assert_eq!(
        r["output"],
        json!([
            {"id": "rs_abc_0", "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "R"}]},
            {"id": "msg_abc_1", "type": "message", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "Sure.", "annotations": [], "logprobs": []}]},
            {"id": "fc_abc_2", "type": "function_call", "status": "completed", "call_id": "call_2", "name": "f", "arguments": "{}"},
        ])
    );
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 3, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 7})
    );
    let long =
        json!({"choices": [{"index": 0, "finish_reason": "length", "message": {"content": "a"}}]});
    let r: Value =
        serde_json::from_slice(&reply.whole(long.to_string().as_bytes(), false).unwrap()).unwrap();
    assert_eq!(
        (
            r["status"].as_str(),
            r["incomplete_details"]["reason"].as_str()
        ),
        (Some("incomplete"), Some("max_output_tokens"))
    );

    let stream = sse(&[
        delta(json!({"content": "Hel"})),
        delta(json!({"content": "lo"})),
        finish("stop"),
        usage(2, 2),
    ]);
    let ev = events(&run(&reply, &[&stream], false));
    let names: Vec<&str> = ev.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, (name, data)) in ev.iter().enumerate() {
        assert_eq!(data["sequence_number"], i as u64, "{name}");
        assert_eq!(data["type"], name.as_str());
    }
    assert_eq!(ev[4].1["delta"], "Hel");
    assert_eq!(ev[4].1["item_id"], "msg_abc_0");
    assert_eq!(ev[6].1["text"], "Hello");
    assert_eq!(
        ev[9].1["response"]["output"][0]["content"][0]["text"],
        "Hello"
    );
    assert_eq!(ev[9].1["response"]["usage"]["output_tokens"], 2);
    // Cut in the second event: the message item started is done (incomplete), then the failure.
    let second = memchr::memmem::find_iter(&stream, b"data: ")
        .nth(1)
        .unwrap();
    let ev = events(&run(&reply, &[&stream[..second + 20]], false));
    assert_eq!(ev.last().unwrap().0, "response.failed");
    assert_eq!(ev[ev.len() - 2].0, "response.output_item.done");
    assert_eq!(ev[ev.len() - 2].1["item"]["status"], "incomplete");
}

#[test]
fn errors_come_in_each_apis_shape() {
    let a: Value =
        serde_json::from_slice(&error_body(Api::Anthropic, 401, "no key", None)).unwrap();
    assert_eq!(
        a,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "no key"}})
    );
    for (status, ty) in [
        (400, "invalid_request_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
    ] {
        let v: Value =
            serde_json::from_slice(&error_body(Api::Anthropic, status, "m", None)).unwrap();
        assert_eq!(v["error"]["type"], ty, "{status}");
    }
    let o: Value =
        serde_json::from_slice(&error_body(Api::Responses, 429, "busy", Some("model"))).unwrap();
    assert_eq!(
        o,
        json!({"error": {"message": "busy", "type": "rate_limit_exceeded", "param": "model", "code": "rate_limit_exceeded"}})
    );
    assert_eq!(
        Api::of("/v1/messages"),
        Some((Api::Anthropic, Route::Create))
    );
    assert_eq!(
        Api::of("/v1/messages/"),
        Some((Api::Anthropic, Route::Create))
    );
    assert_eq!(
        Api::of("/v1/messages/count_tokens"),
        Some((Api::Anthropic, Route::CountTokens))
    );
    assert_eq!(
        Api::of("/v1/messages/batches"),
        Some((Api::Anthropic, Route::Other))
    );
    assert_eq!(
        Api::of("/v1/responses/resp_1"),
        Some((Api::Responses, Route::Stored("resp_1".into())))
    );
    assert_eq!(
        Api::of("/v1/responses/resp_1/input_items"),
        Some((Api::Responses, Route::InputItems("resp_1".into())))
    );
    for other in [
        "/v1/responses//input_items",
        "/v1/responses/a/b/input_items",
        "/v1/responses/resp_1/output_items",
    ] {
        assert_eq!(
            Api::of(other),
            Some((Api::Responses, Route::Other)),
            "{other}"
        );
    }
    assert_eq!(Api::of("/v1/messagesx"), None);
    assert_eq!(Api::of("/v1/chat/completions"), None);
}

/// Hostile requests: a bounded, typed error, never a panic.
#[test]
fn hostile_requests_are_refused_with_a_typed_error() {
    for api in [Api::Anthropic, Api::Responses] {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let body = format!(r#"{{"messages":{deep},"input":{deep}}}"#);
        assert!(matches!(
            translate(api, body.as_bytes()),
            Err(AgentError::Json(_))
        ));
        for bad in [&b"{"[..], b"[]", b"null", b"\xff\xfe", b""] {
            assert!(translate(api, bad).is_err());
        }
    }
    let blocks = vec![json!({"type": "text", "text": "x"}); 100_000];
    let req = json!({"messages": [{"role": "user", "content": blocks}]});
    assert_eq!(
        translate(Api::Anthropic, req.to_string().as_bytes()).unwrap_err(),
        AgentError::TooMany
    );
    let items = vec![json!({"role": "user", "content": "x"}); 100_000];
    let req = json!({"input": items});
    assert_eq!(
        translate(Api::Responses, req.to_string().as_bytes()).unwrap_err(),
        AgentError::TooMany
    );
    let big: serde_json::Map<String, Value> = (0..200_000)
        .map(|i| {
            (
                format!("p{i}"),
                json!({"type": "string", "description": "abcdefghijklmnopqrstuvwxyz0123456789"}),
            )
        })
        .collect();
    let schema = json!({"type": "object", "properties": big});
    assert!(schema.to_string().len() > 10_000_000);
    let req = json!({"messages": [], "tools": [{"name": "big", "input_schema": schema}]});
    assert_eq!(
        translate(Api::Anthropic, req.to_string().as_bytes()).unwrap_err(),
        AgentError::SchemaTooLarge("big".into())
    );
    let req =
        json!({"input": "x", "tools": [{"type": "function", "name": "big", "parameters": schema}]});
    assert!(matches!(
        translate(Api::Responses, req.to_string().as_bytes()),
        Err(AgentError::SchemaTooLarge(_))
    ));
    // Wrong types and values: typed, with the field.
    for (req, param) in [
        (json!({"messages": "hi"}), "messages"),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}),
            "messages[0].content[0].text",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
            "messages[0].content[0].source.type",
        ),
        (json!({"messages": [], "max_tokens": -1}), "max_tokens"),
        (json!({"messages": [], "temperature": "hot"}), "temperature"),
        (
            json!({"messages": [], "tools": [{"name": "t"}]}),
            "tools[0].input_schema",
        ),
        (
            json!({"messages": [], "tool_choice": {"type": "sometimes"}}),
            "tool_choice.type",
        ),
        (json!({"model": 3, "messages": []}), "model"),
    ] {
        let e = translate(Api::Anthropic, req.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.param(), Some(param), "{req}: {e}");
    }
    assert_eq!(
        translate(Api::Anthropic, b"{}").unwrap_err(),
        AgentError::Missing("messages".into())
    );
    for (req, param) in [
        (json!({"input": 3}), "input"),
        (
            json!({"input": [{"type": "message", "role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"input": "x", "reasoning": {"effort": "max"}}),
            "reasoning.effort",
        ),
        (json!({"input": "x", "tool_choice": "maybe"}), "tool_choice"),
    ] {
        let e = translate(Api::Responses, req.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.param(), Some(param), "{req}: {e}");
    }
}

/// A stream piece of the property tests.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Reasoning(String),
    Tool(String, Value),
}

fn piece() -> impl Strategy<Value = Piece> {
    let text = "[a-zé😀 \n\"\\\\]{1,12}";
    let json_leaf = prop_oneof![
        any::<i32>().prop_map(Value::from),
        "[a-z😀\"]{0,6}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ];
    let args = prop::collection::btree_map("[a-z]{1,5}", json_leaf, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    prop_oneof![
        text.prop_map(Piece::Text),
        text.prop_map(Piece::Reasoning),
        ("[a-z_]{1,8}", args).prop_map(|(n, a)| Piece::Tool(n, a)),
    ]
}

/// The backend's stream of these pieces (tool arguments in fragments of `frag` chars), and what the
/// client must see: text, reasoning, tools (name, arguments).
fn backend_stream(
    pieces: &[Piece],
    frag: usize,
) -> (Vec<u8>, String, String, Vec<(String, Value)>) {
    let mut chunks = vec![delta(json!({"role": "assistant"}))];
    let (mut text, mut thinking, mut tools) = (String::new(), String::new(), vec![]);
    for p in pieces {
        match p {
            Piece::Text(t) => {
                text.push_str(t);
                chunks.push(delta(json!({"content": t})));
            }
            Piece::Reasoning(t) => {
                thinking.push_str(t);
                chunks.push(delta(json!({"reasoning_content": t})));
            }
            Piece::Tool(name, args) => {
                let i = tools.len();
                chunks.push(delta(json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": ""}}]})));
                let s: Vec<char> = args.to_string().chars().collect();
                for f in s.chunks(frag.max(1)) {
                    let f: String = f.iter().collect();
                    chunks.push(delta(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": f}}]}),
                    ));
                }
                tools.push((name.clone(), args.clone()));
            }
        }
    }
    chunks.push(finish(if tools.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }));
    chunks.push(usage(10, 20));
    (sse(&chunks), text, thinking, tools)
}

fn cut_at(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort();
    let mut out = vec![];
    let mut last = 0;
    for p in points {
        out.push(data[last..p].to_vec());
        last = p;
    }
    out.push(data[last..].to_vec());
    out
}

/// Checks Anthropic's stream is well formed; returns (text, thinking, tools, stop_reason or "error").
fn check_anthropic(ev: &[(String, Value)]) -> (String, String, Vec<(String, String)>, String) {
    assert_eq!(ev[0].0, "message_start");
    let (mut text, mut thinking, mut tools) = (String::new(), String::new(), vec![]);
    let mut open: Option<(u64, String)> = None;
    let mut next = 0u64;
    let mut end = None;
    for (name, d) in &ev[1..] {
        assert!(
            end.is_none() || name == "message_stop",
            "nothing after the end: {name}"
        );
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "one block at a time");
                assert_eq!(d["index"], next, "indices increase from 0");
                let ty = d["content_block"]["type"].as_str().unwrap().to_string();
                if ty == "tool_use" {
                    tools.push((
                        d["content_block"]["name"].as_str().unwrap().to_string(),
                        String::new(),
                    ));
                }
                open = Some((next, ty));
                next += 1;
            }
            "content_block_delta" => {
                let (i, ty) = open.as_ref().expect("a delta in an open block");
                assert_eq!(&d["index"], i);
                let dl = &d["delta"];
                match (ty.as_str(), dl["type"].as_str().unwrap()) {
                    ("text", "text_delta") => text.push_str(dl["text"].as_str().unwrap()),
                    ("thinking", "thinking_delta") => {
                        thinking.push_str(dl["thinking"].as_str().unwrap())
                    }
                    ("tool_use", "input_json_delta") => tools
                        .last_mut()
                        .unwrap()
                        .1
                        .push_str(dl["partial_json"].as_str().unwrap()),
                    other => panic!("a delta of the wrong kind: {other:?}"),
                }
            }
            "content_block_stop" => {
                let (i, _) = open.take().expect("a stop of an open block");
                assert_eq!(d["index"], i);
            }
            "message_delta" => {
                assert!(open.is_none(), "every block stopped");
                end = Some(d["delta"]["stop_reason"].as_str().unwrap().to_string());
            }
            "message_stop" => {
                assert_eq!(ev.last().map(|e| e.0.as_str()), Some("message_stop"));
                return (
                    text,
                    thinking,
                    tools,
                    end.expect("message_delta before message_stop"),
                );
            }
            "error" => {
                assert!(open.is_none(), "every block stopped before the error");
                end = Some("error".into());
            }
            "ping" => {}
            other => panic!("unknown event {other}"),
        }
    }
    (text, thinking, tools, end.expect("an end or an error"))
}

/// Checks the Responses stream is well formed; returns (text, thinking, tools, final event).
fn check_responses(ev: &[(String, Value)]) -> (String, String, Vec<(String, String)>, String) {
    assert_eq!(ev[0].0, "response.created");
    assert_eq!(ev[1].0, "response.in_progress");
    let (mut text, mut thinking, mut tools) = (String::new(), String::new(), vec![]);
    let mut open: Option<(u64, String)> = None;
    let mut next = 0u64;
    for (i, (name, d)) in ev.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64);
        assert_eq!(d["type"], name.as_str());
        if i + 1 < ev.len() {
            assert!(!matches!(
                name.as_str(),
                "response.completed" | "response.failed" | "response.incomplete"
            ));
        }
        match name.as_str() {
            "response.output_item.added" => {
                assert!(open.is_none());
                assert_eq!(d["output_index"], next);
                let ty = d["item"]["type"].as_str().unwrap().to_string();
                if ty == "function_call" {
                    tools.push((
                        d["item"]["name"].as_str().unwrap().to_string(),
                        String::new(),
                    ));
                }
                open = Some((next, ty));
                next += 1;
            }
            "response.output_text.delta" => text.push_str(d["delta"].as_str().unwrap()),
            "response.reasoning_text.delta" => thinking.push_str(d["delta"].as_str().unwrap()),
            "response.function_call_arguments.delta" => tools
                .last_mut()
                .unwrap()
                .1
                .push_str(d["delta"].as_str().unwrap()),
            "response.function_call_arguments.done" => {
                assert_eq!(d["arguments"].as_str().unwrap(), tools.last().unwrap().1)
            }
            "response.output_text.done" => assert!(text.ends_with(d["text"].as_str().unwrap())),
            "response.output_item.done" => {
                let (i, ty) = open.take().expect("done of an added item");
                assert_eq!(d["output_index"], i);
                assert_eq!(d["item"]["type"], ty.as_str());
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                assert!(open.is_none(), "every item done");
                assert_eq!(
                    d["response"]["output"].as_array().unwrap().len() as u64,
                    next
                );
            }
            _ => {}
        }
    }
    let last = ev.last().unwrap().0.clone();
    (text, thinking, tools, last)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any backend stream, cut into chunks anywhere (mid-line, mid-UTF-8) and possibly ended early,
    /// yields a well-formed event sequence in both APIs: blocks stopped, indices increasing, text and
    /// reasoning as sent, tool arguments reassembling to the JSON the server produced; an early end
    /// is an error event, a whole stream is not.
    #[test]
    fn any_stream_cut_anywhere_is_well_formed(
        pieces in prop::collection::vec(piece(), 0..8),
        frag in 1usize..7,
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        end_at in prop::option::of(any::<usize>()),
    ) {
        let (stream, text, thinking, tools) = backend_stream(&pieces, frag);
        let cut = end_at.map(|e| e % stream.len()).unwrap_or(stream.len());
        let sent = &stream[..cut];
        let whole = cut == stream.len();
        // Did the backend say it finished before the cut (its finish chunk's line whole, even without
        // its line end: the last line of a stream is read)?
        let fin = format!("data: {}", finish(if tools.is_empty() { "stop" } else { "tool_calls" }));
        let finished = memchr::memmem::find(sent, fin.as_bytes()).is_some();
        let chunks = cut_at(sent, &cuts);
        let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
        for api in [Api::Anthropic, Api::Responses] {
            let req = match api {
                Api::Anthropic => json!({"messages": [], "stream": true}),
                Api::Responses => json!({"input": "x", "stream": true}),
            };
            let (_, reply) = chat_of(api, &req);
            let ev = events(&run(&reply, &refs, false));
            let (t, th, tl, end) = match api {
                Api::Anthropic => check_anthropic(&ev),
                Api::Responses => check_responses(&ev),
            };
            prop_assert!(text.starts_with(&t));
            prop_assert!(thinking.starts_with(&th));
            let failed = end == "error" || end == "response.failed";
            prop_assert_eq!(failed, !finished, "{:?}", end);
            if whole {
                prop_assert_eq!(&t, &text);
                prop_assert_eq!(&th, &thinking);
                prop_assert_eq!(tl.len(), tools.len());
                for ((name, args), (want_name, want)) in tl.iter().zip(&tools) {
                    prop_assert_eq!(name, want_name);
                    let got: Value = serde_json::from_str(args).unwrap();
                    prop_assert_eq!(&got, want);
                }
                let want_end = match (api, tools.is_empty()) {
                    (Api::Anthropic, true) => "end_turn",
                    (Api::Anthropic, false) => "tool_use",
                    _ => "response.completed",
                };
                prop_assert_eq!(end.as_str(), want_end);
            }
        }
    }

    /// Think spans split across chunks anywhere: the same text and reasoning as the whole content.
    #[test]
    fn think_spans_split_anywhere_read_the_same(
        parts in prop::collection::vec(("[a-z😀 <>/]{0,6}", any::<bool>()), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut content = String::new();
        for (t, think) in &parts {
            if *think {
                content.push_str(&format!("<think>{t}</think>"));
            } else {
                content.push_str(t);
            }
        }
        let read = |pieces: Vec<String>| {
                let mut split = chat::ThinkSplit::default();
            let mut out = vec![];
            for p in pieces {
                split.feed(&p, &mut out);
            }
            split.finish(&mut out);
            let (mut text, mut reasoning) = (String::new(), String::new());
            for e in out {
                match e {
                    chat::ChatEvent::Text(t) => text.push_str(&t),
                    chat::ChatEvent::Reasoning(t) => reasoning.push_str(&t),
                    _ => {}
                }
            }
            (text, reasoning)
        };
        let chars: Vec<char> = content.chars().collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
        points.sort();
        let mut pieces = vec![];
        let mut last = 0;
        for p in points {
            pieces.push(chars[last..p].iter().collect::<String>());
            last = p;
        }
        pieces.push(chars[last..].iter().collect());
        prop_assert_eq!(read(pieces), read(vec![content.clone()]));
    }
}

/// `store` (default true) keeps the request's conversation for the caller; `previous_response_id` puts a
/// stored conversation before the input, and one that is not there is a 404.
#[test]
fn previous_response_id_continues_a_stored_conversation() {
    let stored = vec![
        json!({"type": "message", "role": "user", "content": "My name is Ada."}),
        json!({"id": "msg_x_0", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "Hello Ada.", "annotations": []}]}),
    ];
    let history = |id: &str| (id == "resp_1").then(|| stored.clone());
    let req = json!({"model": "m", "input": "What is my name?", "previous_response_id": "resp_1"});
    let mut t = super::translate(Api::Responses, req.to_string().as_bytes(), &history).unwrap();
    let keep = t.keep().expect("stored by default");
    assert_eq!(keep.len(), 3);
    assert_eq!(
        keep[2],
        json!({"type": "message", "role": "user", "content": "What is my name?"})
    );
    let (bytes, reply) = t.into_chat("abc", 1, "m", true);
    let chat: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "user", "content": "What is my name?"},
        ])
    );
    let done = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Ada."}, "finish_reason": "stop"}]});
    let r = reply
        .whole_value(done.to_string().as_bytes(), false)
        .unwrap();
    assert_eq!(r["store"], true);
    assert_eq!(r["previous_response_id"], "resp_1");
    let conv = conversation(keep, &r);
    assert_eq!(conv.len(), 4);
    assert_eq!(conv[3]["type"], "message");

    let req = json!({"input": "x", "previous_response_id": "resp_2"});
    let e = super::translate(Api::Responses, req.to_string().as_bytes(), &history).unwrap_err();
    assert_eq!(e, AgentError::NoPrevious("resp_2".into()));
    assert_eq!((e.status(), e.param()), (404, Some("previous_response_id")));

    let req = json!({"input": "x", "store": false});
    let mut t = translate(Api::Responses, req.to_string().as_bytes()).unwrap();
    assert!(t.keep().is_none());
    let (_, reply) = t.into_chat("abc", 1, "m", true);
    let r = reply
        .whole_value(done.to_string().as_bytes(), false)
        .unwrap();
    assert_eq!(
        (r["store"].clone(), r["previous_response_id"].clone()),
        (json!(false), Value::Null)
    );
    assert!(matches!(
        translate(Api::Responses, br#"{"input":"x","store":"yes"}"#),
        Err(AgentError::Type { .. })
    ));
}

/// A streamed Response keeps its final object for the store.
#[test]
fn a_streamed_response_hands_over_its_final_object() {
    let (_, reply) = chat_of(Api::Responses, &json!({"input": "hi", "stream": true}));
    let (mut tr, _) = reply.translator();
    let sse = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let mut out = tr.push(sse.as_bytes());
    out.extend(tr.finish());
    let r = tr.take_final().expect("the final response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["output"][0]["content"][0]["text"], "Hi");
    assert!(tr.take_final().is_none(), "taken once");
}

/// count_tokens: the same prompt, one token asked for, whole; the answer is the server's prompt_tokens.
#[test]
fn count_tokens_asks_the_server_for_one_token() {
    let req = json!({"model": "m", "max_tokens": 500, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut t = translate(Api::Anthropic, req.to_string().as_bytes()).unwrap();
    t.count_only();
    let (bytes, reply) = t.into_chat("abc", 1, "m", true);
    let chat: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(chat["max_tokens"], 1);
    assert!(chat.get("stream").is_none() && chat.get("stream_options").is_none());
    assert!(!reply.stream());
    let n = count_reply(br#"{"usage":{"prompt_tokens":17,"completion_tokens":1}}"#).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&n).unwrap(),
        json!({"input_tokens": 17})
    );
    assert!(count_reply(br#"{"choices":[]}"#).is_err());
    assert!(count_reply(b"not json").is_err());
}
