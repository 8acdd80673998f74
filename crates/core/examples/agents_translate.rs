//! The agent APIs' translation alone, for profiling (`perf record -g`) and quick A/B runs: the request
//! side (a Messages or Responses body → the chat request's bytes) and the stream side (a chat stream →
//! the API's events), with the bodies and the stream of `crates/cli/benches/agents.rs`.
//!
//!   cargo run --release -p mlxbox-core --example agents_translate [MB] [anthropic|responses|request]

use mlxbox_core::proxy::agent_api::{translate, Api};
use std::time::Instant;

#[path = "common/agents_workload.rs"]
mod workload;
use workload::{request, upstream_sse, FINISH};

fn stream(api: Api, bytes: usize) {
    let body = upstream_sse();
    let mut data = Vec::with_capacity(bytes + body.len() + FINISH.len());
    while data.len() < bytes {
        data.extend_from_slice(body.as_bytes());
    }
    data.extend_from_slice(FINISH.as_bytes());
    for _ in 0..3 {
        let t = translate(api, request(api, false).as_bytes(), &|_| None).unwrap();
        let (_, reply) = t.into_chat("bench", 0, "m", true);
        let (mut tr, first) = reply.translator();
        let t0 = Instant::now();
        let mut n = first.len();
        for chunk in data.chunks(4096) {
            n += tr.push(chunk).len();
        }
        n += tr.finish().len();
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{api:?} stream: {:.0} MB/s, {n} bytes written",
            data.len() as f64 / secs / 1e6
        );
    }
    // One bench reply (27 events + finish), whole, many times: the per-request stream cost.
    let one = format!("{body}{FINISH}");
    let n = 20_000;
    let t0 = Instant::now();
    let mut out = 0;
    for _ in 0..n {
        let t = translate(api, request(api, false).as_bytes(), &|_| None).unwrap();
        let (_, reply) = t.into_chat("bench", 0, "m", true);
        let (mut tr, first) = reply.translator();
        out += first.len() + tr.push(one.as_bytes()).len() + tr.finish().len();
    }
    println!(
        "{api:?} one bench reply (request + stream): {:.2} µs ({out} bytes)",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

fn requests(api: Api) {
    let body = request(api, false);
    let n = 100_000;
    let t0 = Instant::now();
    let mut total = 0;
    for _ in 0..n {
        let t = translate(api, body.as_bytes(), &|_| None).unwrap();
        let (chat, _reply) = t.into_chat("0123456789abcdef01234567", 0, "m", true);
        total += chat.len();
    }
    println!(
        "{api:?} request translation: {:.2} µs ({total} bytes)",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mb: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let which = args.next().unwrap_or_default();
    for api in [Api::Anthropic, Api::Responses] {
        let name = format!("{api:?}").to_lowercase();
        if which.is_empty() || which == name {
            stream(api, mb << 20);
        }
        if which.is_empty() || which == "request" {
            requests(api);
        }
    }
}
