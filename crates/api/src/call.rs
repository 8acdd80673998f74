//! Each request of the control API as a type of its own that knows its answer's type: `Call::Reply`. A
//! client sends `call::Status {}` and gets a `StatusReport` back, checked by the compiler, on this Mac's
//! socket and on another host's TLS port alike (`mlxbox_client::control::Client::call`); `Host<C>` is
//! `C` answered by another host's daemon, forwarded by this one, with `C`'s answer. The TypeScript side
//! gets the same table as a type (`ui/src/bindings/Replies.ts`: request tag → answer type), so the
//! windows' `call({ request: "status" })` is typed too.
//!
//! A new verb, end to end: its variant in [`Request`], its HTTP form and its line in the `calls!` table,
//! all in `control.rs`; its arm in the daemon's dispatcher (`core/src/control/server.rs`); its CLI
//! subcommand (`cli/src/main.rs`); its use in a window. Four files, each checked by the compiler.

use crate::control::Request;

pub use crate::control::calls::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Declares each request's type and its answer (used once, beside `Request` in `control.rs`).
macro_rules! calls {
    ($( $(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? } => $reply:ty; )*) => {
        /// Each request as a type of its own (`mlxbox_api::call` re-exports them).
        pub mod calls {
        use super::Request;
        use crate::call::Call;
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq)]
            pub struct $name { $(pub $field: $ty,)* }

            impl From<$name> for Request {
                #[allow(unused_variables)]
                fn from(c: $name) -> Request {
                    Request::$name { $($field: c.$field,)* }
                }
            }

            impl Call for $name {
                type Reply = $reply;
            }
        )*

        /// Every request's tag (as it is on the wire) and the TypeScript name of its answer.
        pub fn replies() -> Vec<(String, String, Vec<String>)> {
            vec![$((
                crate::call::tag(stringify!($name)),
                <$reply as ts_rs::TS>::name(),
                crate::call::ts_imports::<$reply>(),
            ),)*]
        }
        }
    };
}

pub(crate) use calls;

/// A request whose answer is a `Reply`.
pub trait Call: Into<Request> {
    type Reply: Serialize + DeserializeOwned + Send + 'static;
}

/// `C` answered by the daemon of `[hosts.NAME]` `host` (this daemon forwards it): `C`'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Host<C> {
    pub host: String,
    pub forward: C,
}

impl<C: Call> From<Host<C>> for Request {
    fn from(h: Host<C>) -> Request {
        Request::Host {
            host: h.host,
            forward: Box::new(h.forward.into()),
        }
    }
}

impl<C: Call> Call for Host<C> {
    type Reply = C::Reply;
}

/// `BenchStart` → `bench_start`: the wire's tag of a variant (serde's `snake_case`).
pub(crate) fn tag(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The exported TypeScript types an answer's type names: itself, when it is one, else those it holds
/// (`{ [key in string]?: ProxyStats }` names `ProxyStats`).
pub(crate) fn ts_imports<T: ts_rs::TS + 'static>() -> Vec<String> {
    let own = T::name();
    if own.chars().all(|c| c.is_ascii_alphanumeric()) && T::output_path().is_some() {
        return vec![own];
    }
    // The capitalised words of the type expression: the generated types it names.
    let mut names: Vec<String> = own
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each typed request is the variant it names, with the same HTTP form.
    #[test]
    fn a_typed_request_is_its_variant() {
        let r: Request = Logs {
            name: "chat".into(),
            lines: 5,
        }
        .into();
        assert_eq!(
            r,
            Request::Logs {
                name: "chat".into(),
                lines: 5
            }
        );
        let r: Request = Host {
            host: "studio-2".into(),
            forward: Status {},
        }
        .into();
        assert_eq!(r.route().path, "/v1/hosts/studio-2/forward");
        assert_eq!(tag("BenchStart"), "bench_start");
        assert_eq!(tag("Status"), "status");
    }

    /// Writes `ui/src/bindings/Replies.ts`: each request's tag → its answer's type. CI fails when the
    /// committed file differs (scripts/test.sh), as for the ts-rs bindings.
    #[test]
    fn export_replies() {
        let mut imports: Vec<String> = replies().into_iter().flat_map(|r| r.2).collect();
        imports.sort();
        imports.dedup();
        let mut text = String::from(
            "// Generated from crates/api/src/call.rs by `cargo test -p mlxbox-api export_replies`.\n// Do not edit: change the Rust table.\n",
        );
        for i in &imports {
            text.push_str(&format!("import type {{ {i} }} from \"./{i}\";\n"));
        }
        text.push_str("\n/** What each request of the control API answers, by its `request` tag. */\nexport type Replies = {\n");
        for (tag, reply, _) in replies() {
            text.push_str(&format!("  {tag}: {reply};\n"));
        }
        text.push_str("  /** A request forwarded to another host: what that request answers. */\n  host: unknown;\n};\n");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../ui/src/bindings/Replies.ts");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).expect("write the generated replies");
        }
    }
}
