//! Parsing and validation: walks the `toml_edit` tree (which keeps spans) instead of using serde, so that
//! every problem in the file is reported at once, each with its exact `file:line:col` and a hint. The
//! keys, their ranges and enum values are declared in `mlxbox_api::settings`; one module per section reads
//! them (`server.rs`, `app.rs`, `alerts.rs`, `service.rs`); this one holds the walk and its helpers.

mod alerts;
mod app;
mod ctx;
mod metrics;
mod pools;
mod presence;
mod remote;
mod server;
mod service;

use crate::config::settings::Settings;
use alerts::parse_alerts;
use app::parse_app;
use ctx::{type_name, value_span, Ctx, TableView};
use metrics::parse_metrics;
use mlxbox_api::config::{Diagnostic, Severity};
use pools::parse_pools;
use remote::{parse_control, parse_hosts};
use server::parse_server;
use service::{check_ports, parse_service};
use std::path::Path;
use toml_edit::{Document, Item};

/// The mode of the file at `path` when users other than its owner can read it.
pub fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(path).ok()?.mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

/// A warning when the file at `path` holds plaintext API keys and other users may read it (the text
/// alone cannot tell).
pub fn readable_keys_warning(path: &Path, text: &str) -> Option<Diagnostic> {
    let mode = readable_by_others(path)?;
    let doc = Document::parse(text.to_string()).ok()?;
    let server = doc.get("server")?.as_table_like()?;
    let key = ["api_key", "api_keys"]
        .into_iter()
        .find(|k| server.get(k).is_some_and(|i| !i.is_none()))?;
    let mut cx = Ctx {
        path,
        text,
        diags: Vec::new(),
    };
    cx.warn(
        server.key(key).and_then(|k| k.span()),
        format!("settings.toml holds API keys and other users can read it (mode {mode:04o})"),
        Some(format!(
            "run `chmod 600 {}`, or move the keys into the hashed key store with `mlx-box keys import`",
            path.display()
        )),
    );
    cx.diags.pop()
}

/// `mlx-box validate`: the text's diagnostics and those of the file itself (its mode) and of the Mac (each
/// service's model present), in file order.
pub fn validate_file(path: &Path, text: &str) -> (Option<Settings>, Vec<Diagnostic>) {
    let (settings, mut diags) = parse_settings(path, text);
    diags.extend(readable_keys_warning(path, text));
    if let Some(s) = &settings {
        diags.extend(presence::missing_models(path, s));
    }
    diags.sort_by_key(|d| (d.line, d.col));
    (settings, diags)
}

/// Parses and validates settings text. Returns the settings when there is no error (warnings may exist),
/// and every diagnostic in file order.
pub fn parse_settings(path: &Path, text: &str) -> (Option<Settings>, Vec<Diagnostic>) {
    let mut cx = Ctx {
        path,
        text,
        diags: Vec::new(),
    };
    let doc = match Document::parse(text.to_string()) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.message().trim().to_string();
            cx.error(
                e.span(),
                format!("not valid TOML: {msg}"),
                Some("fix the syntax; nothing was applied".to_string()),
            );
            return (None, cx.diags);
        }
    };
    let root = TableView {
        table: doc.as_table(),
        where_: "the top level".into(),
        section: None,
    };
    root.unknown_keys(
        &mut cx,
        &[
            "server", "services", "app", "alerts", "metrics", "control", "hosts", "pools",
        ],
    );

    let server = parse_server(&mut cx, root.get("server"));
    let app = parse_app(&mut cx, root.get("app"));
    let alerts = parse_alerts(&mut cx, root.get("alerts"));
    let metrics = parse_metrics(&mut cx, root.get("metrics"));
    let control = parse_control(&mut cx, root.get("control"));
    let hosts = parse_hosts(&mut cx, root.get("hosts"));

    let mut services = Vec::new();
    match root.get("services") {
        None => cx.warn(
            None,
            "no [services] table: nothing to supervise",
            Some("add a [services.<name>] table with a model and a port".to_string()),
        ),
        Some(item) => match item.as_table_like() {
            None => root.mismatch(&mut cx, "services", item, "a table", "{}"),
            Some(t) => {
                for (name, item) in t.iter() {
                    let span = t.key(name).and_then(|k| k.span());
                    match item.as_table_like() {
                        Some(st) => {
                            if let Some(s) = parse_service(&mut cx, name, st, span, &server, &hosts)
                            {
                                services.push(s);
                            }
                        }
                        None => cx.error(
                            value_span(item),
                            format!(
                                "`services.{name}` must be a table, found {}",
                                type_name(item)
                            ),
                            Some(format!("write it as [services.{name}]")),
                        ),
                    }
                }
            }
        },
    }
    check_ports(&mut cx, root.get("services"), &services);
    check_unproxied(&mut cx, root.get("services"), &server, &services);
    if let Some(p) = server.port {
        let taken = services
            .iter()
            .filter(|s| s.enabled)
            .find(|s| s.port == Some(p) || s.backend_port == Some(p));
        if let Some(s) = taken {
            let span = root
                .get("server")
                .and_then(|i| i.as_table_like())
                .and_then(|t| t.get("port"))
                .and_then(value_span);
            cx.error(
                span,
                format!("[server] port {p} is also a port of [services.{}]", s.name),
                Some("the one endpoint needs a port of its own".to_string()),
            );
        }
    }

    let pools = parse_pools(&mut cx, root.get("pools"), &server, &hosts, &services);

    cx.diags.sort_by_key(|d| (d.line, d.col));
    let ok = !cx.diags.iter().any(|d| d.severity == Severity::Error);
    let settings = ok.then(|| Settings {
        path: path.to_path_buf(),
        server,
        app,
        alerts,
        metrics,
        control,
        hosts,
        services,
        pools,
    });
    (settings, cx.diags)
}

/// A model server mlx-box launches with `port` and no `backend_port` listens on `[server] host` itself,
/// with no proxy in front: no key check, and a request may name any model. On loopback that is the
/// original mlx-box's layout; on any other address it would serve the LAN unguarded, so it is refused.
fn check_unproxied(
    cx: &mut Ctx,
    table: Option<&Item>,
    server: &crate::config::settings::ServerSettings,
    services: &[crate::config::settings::ServiceSpec],
) {
    if server.is_loopback() {
        return;
    }
    for s in services.iter().filter(|s| s.enabled) {
        let (Some(port), None) = (s.port, s.backend_port) else {
            continue;
        };
        if s.kind == mlxbox_api::config::Kind::Command {
            continue; // the operator's own program: its own business
        }
        let span = table
            .and_then(|t| t.as_table_like())
            .and_then(|t| t.get(&s.name))
            .and_then(|t| t.as_table_like())
            .and_then(|t| t.get("port"))
            .and_then(value_span);
        cx.error(
            span,
            format!(
                "[services.{}] port {port} without backend_port would put its server on {} with no API-key check, and any request could make it load another model",
                s.name, server.host
            ),
            Some(format!(
                "add backend_port = {} (the server then listens on 127.0.0.1 and mlx-box's proxy serves port {port} with the keys), or set [server] host = \"127.0.0.1\"",
                port.saturating_add(10)
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Kind, PreventSleep, Probe};
    use mlxbox_api::settings::{self as schema, Section};
    use std::collections::BTreeMap;

    fn parse(text: &str) -> (Option<Settings>, Vec<Diagnostic>) {
        parse_settings(Path::new("settings.toml"), text)
    }

    fn lines(d: &[Diagnostic]) -> Vec<String> {
        d.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn mlx_box_fixture_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/mlx-box-settings.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let (s, d) = parse_settings(&path, &text);
        let s = s.unwrap_or_else(|| panic!("fixture invalid: {:#?}", lines(&d)));
        assert!(!d.iter().any(|d| d.severity == Severity::Error));
        let names: Vec<_> = s.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "router",
                "fast",
                "thinking",
                "embedding",
                "ocr",
                "tts",
                "whisper"
            ]
        );
        // Keys of the original file that mlx-box accepts but does not use are said to be so, where they are.
        let notes: Vec<String> = d
            .iter()
            .filter(|d| d.severity == Severity::Note)
            .map(|d| d.to_string())
            .collect();
        // The seed's thinking_budget on its mlx_lm services: said to be not enforced, where it is.
        assert!(
            d.iter().any(|d| d.severity == Severity::Warning
                && d.message.contains("thinking_budget")
                && d.message.contains("not enforced")),
            "{d:#?}"
        );
        for key in ["frequency_penalty", "presence_penalty"] {
            assert!(
                notes
                    .iter()
                    .any(|n| n.contains(&format!("`{key}`")) && n.contains("accepted but not used")),
                "{key}: {notes:#?}"
            );
        }
        let fast = s.service("fast").unwrap();
        assert_eq!(fast.kind, Kind::Chat);
        assert_eq!(fast.bind_port(), Some(8091));
        assert_eq!(fast.port, Some(8081));
        assert!(fast.filter_reasoning);
        assert_eq!(fast.thinking_budget, Some(0));
        assert_eq!(s.service("embedding").unwrap().kind, Kind::Embedding);
        assert_eq!(s.service("ocr").unwrap().kind, Kind::Ocr);
        let tts = s.service("tts").unwrap();
        assert_eq!(tts.kind, Kind::Tts);
        assert!(tts.enabled, "tts runs on mlx_audio.server");
        assert_eq!(
            (tts.default_voice.as_deref(), tts.language.as_deref()),
            (Some("serena"), Some("Auto"))
        );
        assert_eq!(tts.probe, Probe::Speech);
        let whisper = s.service("whisper").unwrap();
        assert_eq!(
            (whisper.probe.clone(), whisper.language.as_deref()),
            (Probe::Transcription, Some("en"))
        );
        assert_eq!(s.server.api_keys.len(), 2);
        // ssh noted; the short model names of the original's audio servers warned, where they are.
        let all = lines(&d).join("\n");
        assert!(all.contains("[services.ssh] is the SSH port"), "{all}");
        assert!(
            all.contains(":135:")
                && all.contains(
                    "model `Qwen3-TTS-12Hz-0.6B-CustomVoice` in [services.tts] is neither"
                ),
            "{all}"
        );
        assert!(
            all.contains("model `small.en` in [services.whisper]"),
            "{all}"
        );
        assert!(all.contains("frequency_penalty"), "{all}");
    }

    #[test]
    fn a_speech_service_without_a_voice_is_warned() {
        let (s, d) = parse_settings(
            Path::new("s.toml"),
            "[services.t]\nkind = \"tts\"\nport = 8086\nmodel = \"org/tts\"\n",
        );
        assert!(s.is_some());
        let all = lines(&d).join("\n");
        assert!(
            all.contains("s.toml:1:11: warning: [services.t] has no `default_voice`"),
            "{all}"
        );
        let (_, d) = parse_settings(
            Path::new("s.toml"),
            "[services.t]\nkind = \"tts\"\nport = 8086\nmodel = \"org/tts\"\nvoice = \"ryan\"\n",
        );
        assert!(d.is_empty(), "{:?}", lines(&d));
    }

    #[test]
    fn documented_example_is_valid_without_warnings() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/settings.toml.example");
        let text = std::fs::read_to_string(&path).unwrap();
        let (s, d) = parse_settings(&path, &text);
        assert!(s.is_some(), "{:#?}", lines(&d));
        let bad: Vec<_> = d.iter().filter(|d| d.severity != Severity::Note).collect();
        assert!(bad.is_empty(), "{bad:#?}");
        let s = s.unwrap();
        assert_eq!(
            s.service("gpt_oss").unwrap().probe,
            Probe::Http("/health".into())
        );
        assert_eq!(s.service("whisper").unwrap().kind, Kind::Stt);
    }

    #[test]
    fn reports_every_problem_with_exact_positions() {
        let text = r#"[server]
host = "127.0.0.1"

[services.a]
port = "8080"
model = "m"

[services.b]
port = 70000
model = "m"
kind = "banana"

[services.c]
port = 9000
backend_port = 9001
model = "m"
temprature = 0.3

[services.d]
port = 9001
"#;
        let (s, d) = parse(text);
        assert!(s.is_none());
        let l = lines(&d);
        assert_eq!(
            l,
            vec![
                "settings.toml:5:8: error: `port` in [services.a] must be an integer port, found a string (for example `port = 8090`)",
                "settings.toml:9:8: error: `port` = 70000 in [services.b] is not a TCP port (use a number from 1024 to 65535)",
                "settings.toml:11:8: error: unknown kind `banana` in [services.b] (use one of: chat, embedding, ocr, tts, stt, command, distributed)",
                "settings.toml:17:1: warning: unknown key `temprature` in [services.c] (ignored) (did you mean `temperature`?)",
                "settings.toml:19:11: error: [services.d] has no `model` (add `model = \"mlx-community/Qwen3-0.6B-4bit\"` (a Hugging Face id or a local path))",
                "settings.toml:20:8: error: port 9001 of `services.d.port` is already used by `services.c.backend_port` (give every service its own port)",
            ],
        );
    }

    /// A model server with `port` and no `backend_port` on a LAN address would serve
    /// with no key check; on loopback (the original layout) and for a command of the operator's, it may.
    #[test]
    fn a_model_server_without_its_proxy_is_refused_off_loopback() {
        let lan = "[server]\nhost = \"0.0.0.0\"\napi_key = \"k\"\n[services.chat]\nport = 8080\nmodel = \"m\"\n";
        let (s, d) = parse(lan);
        assert!(s.is_none());
        let e = d.iter().find(|d| d.severity == Severity::Error).unwrap();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("no API-key check"), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("backend_port = 8090"));
        assert!(parse(&lan.replace("0.0.0.0", "127.0.0.1")).0.is_some());
        assert!(parse(&format!("{lan}backend_port = 8090\n")).0.is_some());
        assert!(
            parse(&lan.replace("model = \"m\"", "kind = \"command\"\ncommand = [\"x\"]"))
                .0
                .is_some()
        );
    }

    #[test]
    fn prevent_sleep_takes_its_three_values_and_a_positioned_error_otherwise() {
        assert_eq!(
            parse("").0.unwrap().app.prevent_sleep,
            PreventSleep::Serving
        );
        for (v, want) in [
            ("serving", PreventSleep::Serving),
            ("always", PreventSleep::Always),
            ("never", PreventSleep::Never),
        ] {
            let (s, d) = parse(&format!("[app]\nprevent_sleep = \"{v}\"\n"));
            assert!(
                d.iter().all(|d| d.severity != Severity::Error),
                "{:?}",
                lines(&d)
            );
            assert_eq!(s.unwrap().app.prevent_sleep, want);
        }
        let (s, d) = parse("[app]\nprevent_sleep = \"sometimes\"\n");
        assert!(s.is_none());
        let errors: Vec<String> = lines(&d)
            .into_iter()
            .filter(|l| l.contains("error"))
            .collect();
        assert_eq!(
            errors,
            vec!["settings.toml:2:17: error: unknown prevent_sleep `sometimes` in [app] (use \"serving\" (while a model server is loaded), \"always\" or \"never\")"]
        );
        let (s, d) = parse("[app]\nprevent_sleep = true\n");
        assert!(s.is_none());
        assert!(
            lines(&d)
                .iter()
                .any(|l| l.starts_with("settings.toml:2:17: error: `prevent_sleep`")),
            "{:?}",
            lines(&d)
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let (s, d) = parse("[services.a]\nport = 80\nmodel = \"x\n");
        assert!(s.is_none());
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].line, d[0].severity), (3, Severity::Error));
        assert!(d[0].to_string().starts_with("settings.toml:3:"), "{}", d[0]);
    }

    #[test]
    fn command_placeholders_and_kind_inference() {
        let (s, d) = parse(
            r#"[services.gpt_oss]
port = 5001
model = "openai/gpt-oss-20b"
command = ["{python}", "gpt_oss_server.py", "--model", "{model}", "--port", "{port}", "{bogus}"]
"#,
        );
        assert!(s.is_none());
        assert!(
            lines(&d)[0].contains("unknown placeholder `{bogus}`"),
            "{:?}",
            lines(&d)
        );

        let (s, d) = parse(
            "[services.qwen]\nport = 5002\ncommand = [\"{python}\", \"qwen.py\", \"--port\", \"{port}\"]\n",
        );
        let s = s.unwrap_or_else(|| panic!("{:?}", lines(&d)));
        assert_eq!(s.services[0].kind, Kind::Command);
        assert_eq!(s.services[0].probe, Probe::Tcp);
        assert!(s.services[0].enabled);
    }

    #[test]
    fn benchmark_expectations() {
        let (s, d) = parse(
            "[services.fast]\nport = 1\nmodel = \"m\"\nexpect_gen_tok_s = 100\nexpect_ttft_ms = 500\nexpect_inputs_s = 10\n\
             [services.embedding]\nport = 2\nmodel = \"e\"\nexpect_inputs_s = 200\n",
        );
        let s = s.unwrap_or_else(|| panic!("{:?}", lines(&d)));
        let fast = &s.service("fast").unwrap().expect;
        assert_eq!((fast.gen_tok_s, fast.ttft_ms), (Some(100.0), Some(500.0)));
        assert_eq!(fast.inputs_s, None, "does not apply to chat: ignored");
        assert_eq!(s.service("embedding").unwrap().expect.inputs_s, Some(200.0));
        assert_eq!(
            lines(&d),
            ["settings.toml:6:1: warning: `expect_inputs_s` in [services.fast] does not apply to a chat service (ignored) (chat services take expect_gen_tok_s, expect_ttft_ms, expect_output_tok_s, expect_parallel_efficiency)"]
        );
        let (s, d) = parse(
            "[services.fast]\nport = 1\nmodel = \"m\"\nexpect_parallel_efficiency = 1.5\nexpect_gen_tok_s = \"fast\"\n",
        );
        assert!(s.is_none());
        let l = lines(&d);
        assert!(
            l[0].starts_with("settings.toml:4:30: error: `expect_parallel_efficiency` = 1.5"),
            "{l:?}"
        );
        assert!(
            l[1].starts_with(
                "settings.toml:5:20: error: `expect_gen_tok_s` in [services.fast] must be a number"
            ),
            "{l:?}"
        );
        // Changing an expectation is an update in place, never a restart.
        let (a, _) = parse("[services.fast]\nport = 1\nmodel = \"m\"\n");
        let (b, _) = parse("[services.fast]\nport = 1\nmodel = \"m\"\nexpect_gen_tok_s = 50\n");
        let rt = crate::launch::Runtime {
            scripts_dir: "/rt".into(),
            default_python: "python3".into(),
        };
        assert_eq!(
            crate::supervisor::diff::diff_settings(&a.unwrap(), &b.unwrap(), &rt).changes,
            [crate::supervisor::diff::ServiceChange::Update(
                "fast".into()
            )]
        );
    }

    #[test]
    fn disabled_services_may_share_ports() {
        let (s, d) = parse(
            "[services.a]\nport = 5001\nmodel = \"m\"\n[services.b]\nport = 5001\nmodel = \"m\"\nenabled = false\n",
        );
        assert!(s.is_some(), "{:?}", lines(&d));
    }

    /// Fuzz the parser: lines assembled from every key it knows (with values of every type, out of
    /// range, blank keys, bad origins) and from garbage never panic it; every diagnostic points inside the
    /// text; and a text it accepts has no blank key and no error.
    fn line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let keys: Vec<&'static str> = schema::KEYS.iter().map(|k| k.name).collect();
        let value = prop_oneof![
            Just("\"\"".to_string()),
            Just("\" \"".to_string()),
            Just("[\"\", \"k\"]".to_string()),
            Just("[\"http://a.test\", \"ftp://x/\"]".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|x| format!("{x:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            "\"[ -~]{0,10}\"".prop_map(|s| s.replace('\\', "")),
            Just("{ A = \"b\" }".to_string()),
            Just("[1, \"x\"]".to_string()),
        ];
        prop_oneof![
            4 => (proptest::sample::select(keys), value).prop_map(|(k, v)| format!("{k} = {v}")),
            1 => prop_oneof![
                Just("[server]".to_string()),
                Just("[app]".to_string()),
                Just("[alerts]".to_string()),
                "\\[services\\.[a-z_-]{1,6}\\]".prop_map(|s| s.replace('\\', "")),
            ],
            1 => "[ -~]{0,20}",
        ]
    }

    proptest::proptest! {
        #[test]
        fn the_parser_never_panics_and_positions_are_real(lines in proptest::collection::vec(line(), 0..24)) {
            let text = lines.join("\n");
            let (settings, diags) = parse_settings(Path::new("s.toml"), &text);
            let n_lines = text.lines().count().max(1);
            for d in &diags {
                proptest::prop_assert!(d.line >= 1 && d.line <= n_lines + 1, "{d} in {text:?}");
            }
            if let Some(s) = settings {
                proptest::prop_assert!(!diags.iter().any(|d| d.severity == Severity::Error));
                proptest::prop_assert!(s.server.api_keys.iter().all(|k| !k.trim().is_empty()));
            }
        }
    }

    /// Every key is declared once (`mlxbox_api::settings`); the parser reads nothing else (its unknown-key
    /// check and its ranges come from there), the form's schema is generated from it, and the example file
    /// must show every declared key (set or commented out) and no other.
    #[test]
    fn parser_example_and_form_schema_agree_key_by_key() {
        let example = include_str!("../../../../../config/settings.toml.example");
        let form = include_str!("../../../../../ui/src/lib/settingsSchema.generated.ts");
        // Keys of the example per section (`[services.x]` counts as `services`), commented or not.
        let mut in_example: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut section = String::new();
        for line in example.lines() {
            let t = line.trim().trim_start_matches('#').trim();
            if let Some(h) = t.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                if !line.trim().starts_with('#') {
                    section = h.split('.').next().unwrap_or("").to_string();
                }
                continue;
            }
            if let Some((k, _)) = t.split_once('=') {
                let k = k.trim();
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    in_example
                        .entry(section.clone())
                        .or_default()
                        .push(k.to_string());
                }
            }
        }
        for (name, sec) in [
            ("server", Section::Server),
            ("app", Section::App),
            ("alerts", Section::Alerts),
            ("metrics", Section::Metrics),
            ("control", Section::Control),
            ("hosts", Section::Hosts),
            ("pools", Section::Pools),
            ("services", Section::Services),
        ] {
            let keys = schema::names(sec);
            let ex = in_example.get(name).cloned().unwrap_or_default();
            for k in &keys {
                assert!(
                    ex.iter().any(|e| e == k),
                    "[{name}] {k} is not in config/settings.toml.example"
                );
                assert!(
                    form.contains(&format!("\"key\": \"{k}\"")),
                    "[{name}] {k} is not in ui/src/lib/settingsSchema.generated.ts: run `cargo test -p mlxbox-api export_settings_schema`"
                );
            }
            for k in &ex {
                assert!(
                    keys.contains(&k.as_str()),
                    "[{name}] `{k}` (in the example) is not a declared key (mlxbox_api::settings)"
                );
            }
        }
    }

    #[test]
    fn the_responses_store_caps_are_read_with_their_defaults_and_ranges() {
        let base = "[services.chat]\nport = 8080\nmodel = \"m\"\n";
        let (s, _) = parse(base);
        assert_eq!(
            s.unwrap().server.responses,
            crate::config::DEFAULT_RESPONSES
        );
        let (s, d) = parse(&format!(
            "[server]\nresponses_max_count = 0\nresponses_max_mb = 1.5\nresponses_keep_days = 0.5\n{base}"
        ));
        let r = s.unwrap_or_else(|| panic!("{d:?}")).server.responses;
        assert_eq!((r.max_count, r.max_bytes, r.keep_s), (0, 3 << 19, 43_200));
        for bad in [
            "responses_max_count = -1",
            "responses_keep_days = 0",
            "responses_max_mb = \"x\"",
        ] {
            let (s, d) = parse(&format!("[server]\n{bad}\n{base}"));
            assert!(s.is_none(), "{bad}");
            assert!(lines(&d)[0].contains(":2:"), "positioned: {d:?}");
        }
    }

    #[test]
    fn metrics_listen_is_an_address_with_a_port() {
        let base = "[services.chat]\nport = 8080\nmodel = \"m\"\n";
        // Off loopback is allowed: that listener asks for a key (control/server.rs `scrape_auth`).
        for good in ["127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464"] {
            let (s, d) = parse(&format!("{base}[metrics]\nlisten = \"{good}\"\n"));
            assert_eq!(s.unwrap().metrics.listen, good.parse().ok(), "{d:?}");
        }
        for bad in ["localhost", "127.0.0.1", "127.0.0.1:99999", ""] {
            let (s, d) = parse(&format!("{base}[metrics]\nlisten = \"{bad}\"\n"));
            assert!(s.is_none(), "{bad}");
            assert!(lines(&d)[0].contains(":5:"), "positioned: {d:?}");
        }
    }

    /// Every number key the parser reads has a declared range: a key read but not declared would make
    /// `bounds` fall back to no range (and trip its debug assertion).
    #[test]
    fn every_declared_number_has_a_range() {
        for k in schema::KEYS {
            if matches!(k.ty, schema::KeyType::Int | schema::KeyType::Float) {
                assert!(k.range.is_some(), "{} has no range", k.name);
            }
        }
    }
}
