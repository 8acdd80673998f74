//! Which headers of a message belong to its connection, not to it (RFC 9110 §7.6.1), and the credential
//! headers the proxy keeps for itself: none of them is forwarded, either way.

use axum::http::{header, HeaderMap};

/// Anthropic's key header: a credential for mlx-box, never passed to a backend.
pub(super) const X_API_KEY: header::HeaderName = header::HeaderName::from_static("x-api-key");

/// Headers that belong to one connection, not to the request: never forwarded either way. (Names, not
/// strings: removing by a `&str` parses it on every request.)
const HOP_BY_HOP: [header::HeaderName; 11] = [
    header::CONNECTION,
    header::HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
];

/// The headers of one message that belong to its connection, not to it (RFC 9110 §7.6.1): the hop-by-hop
/// ones, and those its `Connection` header names.
pub(super) struct HopByHop {
    /// Named by `Connection`: none (and no allocation) for the usual `keep-alive` or `close`.
    named: Vec<header::HeaderName>,
}

impl HopByHop {
    pub(super) fn of(headers: &HeaderMap) -> HopByHop {
        let mut values = headers.get_all(header::CONNECTION).iter();
        let simple = match (values.next(), values.next()) {
            (None, _) => true,
            (Some(v), None) => {
                v.as_bytes().eq_ignore_ascii_case(b"keep-alive")
                    || v.as_bytes().eq_ignore_ascii_case(b"close")
            }
            _ => false,
        };
        if simple {
            return HopByHop { named: vec![] };
        }
        let named = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .take(32)
            .filter_map(|n| header::HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        HopByHop { named }
    }

    pub(super) fn contains(&self, name: &header::HeaderName) -> bool {
        HOP_BY_HOP.contains(name) || self.named.contains(name)
    }
}

/// Removes the hop-by-hop headers, `Content-Length` too unless `keep_length`. The names present are found
/// in one pass: removing each of the list by name cost a hash per name on every reply.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_length: bool) {
    let hop = HopByHop::of(headers);
    let found: Vec<header::HeaderName> = headers
        .keys()
        .filter(|k| hop.contains(k) && !(keep_length && *k == header::CONTENT_LENGTH))
        .cloned()
        .collect();
    for n in found {
        headers.remove(n);
    }
}

/// A reply's headers as they go to the client: no hop-by-hop ones, its Content-Length kept when
/// `keep_length` (the body passes unchanged: hyper's length-delimited path, no chunking). Returns
/// whether the reply is an SSE stream.
pub(super) fn downstream_head(headers: &mut HeaderMap, keep_length: bool) -> bool {
    strip_hop_by_hop(headers, keep_length);
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn connection_named_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.append(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        let mut kept = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        // A reply that passes unchanged keeps its length.
        strip_hop_by_hop(&mut kept, true);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[header::CONTENT_LENGTH], "2");
    }
}
