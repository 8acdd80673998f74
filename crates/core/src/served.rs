//! The served-vs-configured check: what a running server really serves — the `--model` its process was
//! started with (read from the process, so adopted servers and custom `command`s count too) and that
//! model's `config.json` (quantization bits and group size, else its dtype) — against settings.toml's
//! `model` and `quantization`. The seed's case: "config says bf16, it actually runs 8-bit".

use crate::config::precision::float;
pub use crate::config::precision::{configured_precision, Precision};
use crate::config::ServiceSpec;
use crate::estimate::locate_model;
use std::path::Path;

/// What a model directory's config.json says (mlx's `quantization` block, else `torch_dtype`/`dtype`).
pub fn precision_of(config: &serde_json::Value) -> Option<Precision> {
    let q = config
        .get("quantization")
        .or_else(|| config.get("quantization_config"));
    if let Some(bits) = q.and_then(|q| q.get("bits")).and_then(|b| b.as_u64()) {
        let group = q.and_then(|q| q.get("group_size")).and_then(|g| g.as_u64());
        return Some(Precision::Bits(bits, group));
    }
    let dtype = config
        .get("torch_dtype")
        .or_else(|| config.get("dtype"))
        .and_then(|d| d.as_str())?;
    float(dtype)
}

/// The value of `--model` (or `--model=`) in a server's argv.
pub fn model_arg(argv: &[String]) -> Option<String> {
    flag_value(argv, "--model")
}

/// The value of `flag` (`--flag VALUE` or `--flag=VALUE`) in an argv.
fn flag_value(argv: &[String], flag: &str) -> Option<String> {
    argv.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            argv.get(i + 1).cloned()
        } else {
            a.strip_prefix(flag)
                .and_then(|r| r.strip_prefix('='))
                .map(str::to_string)
        }
    })
}

/// The same model: the same directory once resolved (a path, or a hub id's snapshot), else the same id.
fn same_model(a: &str, b: &str, hub: &Path) -> bool {
    let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    if norm(a) == norm(b) {
        return true;
    }
    match (locate_model(a, hub), locate_model(b, hub)) {
        (Some(x), Some(y)) => std::fs::canonicalize(x).ok() == std::fs::canonicalize(y).ok(),
        _ => false,
    }
}

/// What differs between the settings and the running server (its argv), one sentence each; empty when
/// they agree or nothing can be compared.
pub fn mismatches(spec: &ServiceSpec, argv: &[String], hub: &Path) -> Vec<String> {
    let mut out = vec![];
    let Some(configured) = spec.model.as_deref() else {
        return out;
    };
    let served = model_arg(argv);
    let model = served.as_deref().unwrap_or(configured);
    if let Some(s) = &served {
        if !same_model(configured, s, hub) {
            out.push(format!(
                "config says model {configured}, the server runs {s}"
            ));
        }
    }
    let claimed = spec.quantization.as_deref().and_then(configured_precision);
    // A server that quantizes at load (the embedding server's `--quantize-bits`) runs that, whatever
    // the stored weights are.
    let at_load = flag_value(argv, "--quantize-bits")
        .and_then(|b| b.parse::<u64>().ok())
        .map(|b| Precision::Bits(b, None));
    let actual = at_load.or_else(|| {
        locate_model(model, hub)
            .and_then(|d| crate::bench::machine::read_config(&d))
            .as_ref()
            .and_then(precision_of)
    });
    if let (Some(c), Some(a)) = (claimed, actual) {
        if !a.agrees(&c) {
            out.push(format!("config says {c}, the server runs {a} ({model})"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn precisions_read_and_claimed() {
        assert_eq!(
            precision_of(&json!({"quantization": {"bits": 8, "group_size": 64}})),
            Some(Precision::Bits(8, Some(64)))
        );
        assert_eq!(
            precision_of(&json!({"torch_dtype": "bfloat16"})),
            Some(Precision::Float("bfloat16".into()))
        );
        assert_eq!(precision_of(&json!({})), None);
        for (q, p) in [
            ("8", Some(Precision::Bits(8, None))),
            ("4bit", Some(Precision::Bits(4, None))),
            ("int8", Some(Precision::Bits(8, None))),
            ("q4", Some(Precision::Bits(4, None))),
            ("8-bit", Some(Precision::Bits(8, None))),
            ("true", Some(Precision::Bits(8, None))),
            ("bf16", Some(Precision::Float("bfloat16".into()))),
            ("false", None),
            ("something", None),
            ("999", None),
        ] {
            assert_eq!(configured_precision(q), p, "{q}");
        }
        assert_eq!(Precision::Bits(8, Some(64)).to_string(), "8-bit (group 64)");
    }

    #[test]
    fn model_args() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            model_arg(&v("python -m mlx_lm server --model /m/a --port 1")).as_deref(),
            Some("/m/a")
        );
        assert_eq!(
            model_arg(&v("server --model=org/x")).as_deref(),
            Some("org/x")
        );
        assert_eq!(model_arg(&v("server --port 1")), None);
    }

    #[test]
    fn mismatches_name_what_the_config_says_and_what_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str, cfg: serde_json::Value| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
            d.display().to_string()
        };
        let four = mk(
            "four",
            json!({"quantization": {"bits": 4, "group_size": 64}}),
        );
        let eight = mk(
            "eight",
            json!({"quantization": {"bits": 8, "group_size": 64}}),
        );
        let spec = |model: &str, q: Option<&str>| {
            let text = format!(
                "[services.chat]\nport = 8080\nmodel = \"{model}\"\n{}",
                q.map(|q| format!("quantization = \"{q}\"\n"))
                    .unwrap_or_default()
            );
            let (s, d) = crate::config::parse_settings(Path::new("s.toml"), &text);
            s.unwrap_or_else(|| panic!("{d:?}")).services.remove(0)
        };
        let argv = |m: &str| vec!["server".to_string(), "--model".into(), m.to_string()];
        let hub = dir.path().join("hub");
        assert!(mismatches(&spec(&four, Some("4bit")), &argv(&four), &hub).is_empty());
        assert!(mismatches(&spec(&four, None), &argv(&format!("{four}/")), &hub).is_empty());
        let m = mismatches(&spec(&four, None), &argv(&eight), &hub);
        assert_eq!(
            m,
            [format!("config says model {four}, the server runs {eight}")]
        );
        let m = mismatches(&spec(&eight, Some("bf16")), &argv(&eight), &hub);
        assert_eq!(
            m,
            [format!(
                "config says bfloat16, the server runs 8-bit (group 64) ({eight})"
            )]
        );
        // No --model in its argv (a custom command): the configured model's own files are checked.
        let m = mismatches(&spec(&eight, Some("4")), &["server".into()], &hub);
        assert_eq!(m.len(), 1, "{m:?}");
    }
}
