//! A `multipart/form-data` body (an audio upload to `/v1/audio/transcriptions`): where its text fields
//! are, so the proxy can hold `model` to the service's model as it does for a JSON body, and add the
//! fields a request left out (the service's `language`, OpenAI's JSON reply). The parts are found in
//! the bytes and never copied; a rewrite splices the bytes (RFC 7578).

use memchr::memmem;
use std::ops::Range;

/// More parts than this is not an upload a client sends: refused.
const MAX_PARTS: usize = 64;
/// A part's header block longer than this is refused.
const MAX_PART_HEADERS: usize = 8 * 1024;

#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum FormError {
    #[error("the multipart body has no boundary in its Content-Type")]
    NoBoundary,
    #[error("the multipart body is malformed (at byte {0})")]
    Malformed(usize),
    #[error("the multipart body has more than {MAX_PARTS} parts")]
    TooManyParts,
    #[error("the multipart body names `{0}` twice")]
    Duplicate(String),
}

#[derive(Debug)]
pub(crate) struct Form {
    boundary: Vec<u8>,
    /// Each part's field name and the byte range of its content.
    parts: Vec<(String, Range<usize>)>,
    /// Where the closing `\r\n--boundary--` starts: new parts go before it.
    close: usize,
}

/// The boundary of a `multipart/form-data` Content-Type; `None` for any other type.
pub(crate) fn boundary(content_type: &str) -> Option<Result<String, FormError>> {
    let mut it = content_type.split(';');
    let mime = it.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let b = it.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    Some(match b {
        // RFC 2046: 1 to 70 characters.
        Some(b) if !b.is_empty() && b.len() <= 70 => Ok(b),
        _ => Err(FormError::NoBoundary),
    })
}

pub(crate) fn parse(body: &[u8], boundary: &str) -> Result<Form, FormError> {
    let delim = [b"--", boundary.as_bytes()].concat();
    let next = |from: usize| {
        memmem::find(&body[from..], &[b"\r\n", &delim[..]].concat()).map(|i| i + from)
    };
    // The first delimiter may open the body (no CRLF before it) or follow a preamble.
    let mut at = if body.starts_with(&delim) {
        0
    } else {
        next(0).ok_or(FormError::Malformed(0))? + 2
    };
    let mut parts: Vec<(String, Range<usize>)> = vec![];
    loop {
        let after = at + delim.len();
        if body.get(after..after + 2) == Some(b"--") {
            // The closing delimiter: `at` is past its CRLF, except for an empty form.
            return Ok(Form {
                boundary: boundary.as_bytes().to_vec(),
                parts,
                close: at.saturating_sub(2),
            });
        }
        if body.get(after..after + 2) != Some(b"\r\n") {
            return Err(FormError::Malformed(after));
        }
        if parts.len() == MAX_PARTS {
            return Err(FormError::TooManyParts);
        }
        let h0 = after + 2;
        let h_end = memmem::find(
            &body[h0..body.len().min(h0 + MAX_PART_HEADERS)],
            b"\r\n\r\n",
        )
        .ok_or(FormError::Malformed(h0))?
            + h0;
        let name = field_name(&body[h0..h_end]).ok_or(FormError::Malformed(h0))?;
        let c0 = h_end + 4;
        let c_end = next(c0).ok_or(FormError::Malformed(c0))?;
        parts.push((name, c0..c_end));
        at = c_end + 2;
    }
}

/// `name` of a part's `Content-Disposition: form-data; name="…"` header.
fn field_name(headers: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(headers).ok()?;
    let line = text.split("\r\n").find(|l| {
        l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    line.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("name")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

impl Form {
    /// The text of the field `name` (`Ok(None)` when absent; an error when it appears twice, since
    /// which one a server keeps is its choice, and a check that can be steered is no check).
    pub(crate) fn text<'b>(
        &self,
        body: &'b [u8],
        name: &str,
    ) -> Result<Option<&'b str>, FormError> {
        let mut found = self.parts.iter().filter(|(n, _)| n == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(FormError::Duplicate(name.to_string()));
        }
        match first {
            None => Ok(None),
            Some((_, r)) => std::str::from_utf8(&body[r.clone()])
                .map(Some)
                .map_err(|_| FormError::Malformed(r.start)),
        }
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.parts.iter().any(|(n, _)| n == name)
    }

    /// The body with field `set.0` set to `set.1` (its content replaced, or the field appended, as a JSON
    /// body gets its `model` inserted) and `add`'s fields appended.
    pub(crate) fn rewrite(
        &self,
        body: &[u8],
        set: Option<(&str, &str)>,
        add: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 128 * (add.len() + 1));
        let mut from = 0;
        let mut append: Vec<(&str, &str)> = vec![];
        if let Some((name, value)) = set {
            match self.parts.iter().find(|(n, _)| n == name) {
                Some((_, r)) => {
                    out.extend_from_slice(&body[..r.start]);
                    out.extend_from_slice(value.as_bytes());
                    from = r.end;
                }
                None => append.push((name, value)),
            }
        }
        append.extend_from_slice(add);
        out.extend_from_slice(&body[from..self.close]);
        for (name, value) in &append {
            out.extend_from_slice(b"\r\n--");
            out.extend_from_slice(&self.boundary);
            out.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\"\r\n\r\n");
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(&body[self.close..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn form(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, v) in fields {
            b.extend_from_slice(
                format!("--XyZ\r\nContent-Disposition: form-data; name=\"{k}\"").as_bytes(),
            );
            if *k == "file" {
                b.extend_from_slice(b"; filename=\"a.wav\"\r\nContent-Type: audio/wav");
            }
            b.extend_from_slice(format!("\r\n\r\n{v}\r\n").as_bytes());
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        b
    }

    #[test]
    fn finds_fields_and_rewrites_them() {
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary(CT), Some(Ok("XyZ".into())));
        assert_eq!(
            boundary("multipart/form-data; boundary=\"q b\""),
            Some(Ok("q b".into()))
        );
        assert_eq!(
            boundary("multipart/form-data"),
            Some(Err(FormError::NoBoundary))
        );
        let body = form(&[("file", "RIFF\r\n--Xy not a delimiter"), ("model", "tiny")]);
        let f = parse(&body, "XyZ").unwrap();
        assert_eq!(f.text(&body, "model").unwrap(), Some("tiny"));
        assert_eq!(f.text(&body, "language").unwrap(), None);
        let out = f.rewrite(&body, Some(("model", "org/whisper")), &[("language", "en")]);
        let g = parse(&out, "XyZ").unwrap();
        assert_eq!(g.text(&out, "model").unwrap(), Some("org/whisper"));
        assert_eq!(g.text(&out, "language").unwrap(), Some("en"));
        assert_eq!(
            g.text(&out, "file").unwrap(),
            Some("RIFF\r\n--Xy not a delimiter")
        );
        // Nothing to do: the same bytes.
        assert_eq!(f.rewrite(&body, None, &[]), body);
        // A form without the field gets it, as a JSON body gets its model.
        let bare = form(&[("file", "RIFF")]);
        let f = parse(&bare, "XyZ").unwrap();
        let out = f.rewrite(&bare, Some(("model", "org/whisper")), &[]);
        let g = parse(&out, "XyZ").unwrap();
        assert_eq!(g.text(&out, "model").unwrap(), Some("org/whisper"));
        assert_eq!(g.text(&out, "file").unwrap(), Some("RIFF"));
    }

    #[test]
    fn refuses_what_could_steer_the_check() {
        let body = form(&[("model", "a"), ("model", "b")]);
        let f = parse(&body, "XyZ").unwrap();
        assert_eq!(
            f.text(&body, "model"),
            Err(FormError::Duplicate("model".into()))
        );
        for bad in [
            &b"--XyZ\r\nno end"[..],
            b"junk",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
        ] {
            assert!(
                parse(bad, "XyZ").is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = form(&vec![("f", "x"); MAX_PARTS + 1]);
        assert_eq!(parse(&many, "XyZ").unwrap_err(), FormError::TooManyParts);
    }
}
