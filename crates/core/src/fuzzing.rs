//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`): each feeds hostile input to
//! one parser and checks the invariants a panic would break. Not part of the API.

/// The proxy's body scan: on any input, no panic; on success, the splice gives valid JSON whenever serde
/// also reads the body as an object, with the same `model`.
pub fn request_body(data: &[u8]) {
    use crate::proxy::body;
    if let Ok(p) = body::peek(data) {
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(data) {
            if let Some(serde_json::Value::String(m)) = o.get("model") {
                assert_eq!(
                    p.model.as_ref().and_then(|m| m.1.as_deref()),
                    Some(m.as_str())
                );
            }
            let out = body::with_model(data, &p, "fuzz/model");
            let v: serde_json::Value =
                serde_json::from_slice(&out).expect("splice keeps JSON valid");
            assert_eq!(v["model"], "fuzz/model");
        }
    }
}

/// The SSE filter: chunked by the first byte's size, never panics, and gives the same output however cut.
pub fn sse_filter(data: &[u8]) {
    use crate::proxy::SseFilter;
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let run = |size: usize| {
        let mut f = SseFilter::default();
        let mut out = Vec::new();
        for c in rest.chunks(size.max(1)) {
            match f.push(c) {
                Ok(o) => out.extend(o),
                Err(_) => return None,
            }
        }
        out.extend(f.finish());
        Some(out)
    };
    assert_eq!(run(n as usize), run(rest.len().max(1)));
}

/// settings.toml: no panic, and every diagnostic points inside the text.
pub fn settings(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (_, diags) = crate::config::parse_settings(std::path::Path::new("s.toml"), text);
    let lines = text.lines().count().max(1) + 1;
    assert!(diags.iter().all(|d| d.line >= 1 && d.line <= lines));
}

/// A `ConfigEditRequest` as the control API decodes it, applied to the real fixture.
pub fn config_edit(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<crate::api::ConfigEditRequest>(data) else {
        return;
    };
    let text = include_str!("../../../tests/fixtures/mlx-box-settings.toml");
    if let Ok(out) = crate::config::apply_edits(text, &req.edits) {
        let _ = crate::config::parse_settings(std::path::Path::new("s.toml"), &out);
    }
}

/// A backend's reply (head and body) read as the proxy reads it: never a panic, and the same outcome
/// whether it arrives whole or cut into reads of the first byte's size.
pub fn backend_reply(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let whole = crate::proxy::read_reply(rest, rest.len(), false);
    assert_eq!(crate::proxy::read_reply(rest, n as usize, false), whole);
    if let Ok((_, body)) = whole {
        assert!(body.len() <= rest.len());
    }
}
