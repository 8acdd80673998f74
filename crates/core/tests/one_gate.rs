//! Every socket the daemon serves is served by the gate (`src/gate/`): no other module of the core accepts
//! a connection, runs hyper's or axum's server, or adopts a listening socket. A listener that skipped the
//! gate would skip its descriptor budget, caps, timeouts and door.
//! Test code may do as it likes (it starts stand-in servers); port probes that bind and drop at once
//! (`port_in_use`, the demo's free ports) serve nothing and are not matched.

use std::path::Path;

/// What only the gate may write: accepting, serving, adopting a listener.
const SERVING: &[&str] = &[
    ".accept(",
    "axum::serve",
    "serve_connection",
    "TcpListener::from_std",
    "UnixListener::bind",
    "tokio::net::TcpListener",
    "conn::http1::Builder",
    "conn::auto::Builder",
];

#[test]
fn nothing_outside_the_gate_accepts_a_connection() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let gate = src.join("gate");
    let mut found = vec![];
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p != gate {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().and_then(|x| x.to_str()) != Some("rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                let line = line.split("//").next().unwrap_or("");
                for pat in SERVING {
                    if line.contains(pat) {
                        found.push(format!(
                            "{}:{}: `{pat}`",
                            p.strip_prefix(&src).unwrap().display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "serve through crate::gate (a Spec and a Handler), not by hand:\n{}",
        found.join("\n")
    );
}

/// The check above can fail: it finds what the daemon's control socket was served with before the gate.
#[test]
fn the_check_finds_a_listener_written_by_hand() {
    let by_hand = "let l = tokio::net::UnixListener::bind(&p)?;\naxum::serve(l, app).await";
    assert!(SERVING.iter().any(|p| by_hand.contains(p)));
}
