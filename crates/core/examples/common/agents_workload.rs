//! The agent benchmark's workload, one copy for `crates/cli/benches/agents.rs` and
//! `crates/core/examples/agents_translate.rs`: the upstream's chat stream and the request bodies.
#![allow(dead_code)]

use mlxbox_core::proxy::agent_api::Api;

/// The upstream's stream without its end: a short answer with thinking, one token per event (its fields
/// trimmed to what the translation reads: nginx takes at most 4 KB in a `return`).
pub fn upstream_sse() -> String {
    let mut s = String::new();
    let chunk = |c: &str| {
        format!(
            "data: {{\"model\":\"bench/model\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}}}}]}}\n\n",
            serde_json::to_string(c).unwrap()
        )
    };
    s.push_str(&chunk("<think>"));
    s.push_str(&chunk("Plan."));
    s.push_str(&chunk("</think>"));
    for i in 0..24 {
        s.push_str(&chunk(&format!(" word{i}")));
    }
    s
}

/// The stream's end: the finish reason with usage, then `[DONE]`.
pub const FINISH: &str = "data: {\"model\":\"bench/model\",\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"delta\":{}}],\"usage\":{\"prompt_tokens\":60,\"completion_tokens\":27,\"total_tokens\":87}}\n\ndata: [DONE]\n\n";
pub const SYSTEM: &str = "You are a careful assistant. Answer in two short paragraphs, cite nothing you cannot check, and say so when you do not know. Prefer plain words; avoid lists unless asked.";
pub const USER: &str = "Explain, for someone who runs a few local language models on one workstation, why the memory a model needs grows with the context length, and what the KV cache is. Then say how much memory an 8B model at 4-bit with a 32k context needs, roughly.";

/// The bench's request body of `api` (streamed; Responses with `store`).
pub fn request(api: Api, store: bool) -> String {
    match api {
        Api::Anthropic => serde_json::json!({
            "model": "bench/model", "max_tokens": 256, "temperature": 0.7, "stream": true,
            "system": SYSTEM, "messages": [{"role": "user", "content": USER}],
        }),
        Api::Responses => serde_json::json!({
            "model": "bench/model", "max_output_tokens": 256, "temperature": 0.7, "stream": true,
            "instructions": SYSTEM, "input": USER, "store": store,
        }),
    }
    .to_string()
}
