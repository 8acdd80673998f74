//! `[services.NAME]`: one service (kind, model, ports, generation flags, command, supervision, benchmark
//! thresholds), and the check that no two services share a port.

use super::ctx::{value_span, Ctx, TableView};
use crate::config::settings::{
    DistributedSpec, HostSpec, Pos, Positions, Probe, RankHost, RestartPolicy, ServerSettings,
    ServiceSpec,
};
use mlxbox_api::config::Kind;
use mlxbox_api::settings::{self as schema, Section};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use toml_edit::{Item, TableLike};

const PLACEHOLDERS: &[&str] = &["{python}", "{model}", "{host}", "{port}", "{max_tokens}"];

pub(super) fn parse_service(
    cx: &mut Ctx,
    name: &str,
    t: &dyn TableLike,
    name_span: Option<Range<usize>>,
    _server: &ServerSettings,
    hosts: &[HostSpec],
) -> Option<ServiceSpec> {
    let where_ = format!("[services.{name}]");
    let v = TableView {
        table: t,
        where_: where_.clone(),
        section: Some(Section::Services),
    };
    if name == "ssh" {
        // The original mlx-box keeps its SSH port here; it is not a model server.
        cx.note(
            name_span,
            "[services.ssh] is the SSH port of the mlx-box stack, not a model server: mlx-box leaves it alone",
        );
        return None;
    }
    check_name(cx, name, name_span.clone());
    v.unknown_keys(cx, &schema::names(Section::Services));
    let command = parse_command(cx, &v);
    let kind = parse_kind(cx, &v, name, command.is_some());

    let positions = t
        .iter()
        .map(|(k, _)| (k.to_string(), cx.pos(t.key(k).and_then(|k| k.span()))))
        .collect::<BTreeMap<String, Pos>>();

    let model = parse_model(cx, &v, kind, command.as_deref(), name_span.clone());
    let (port, backend_port) = parse_ports(cx, &v, name_span.clone());
    let (enabled, disabled_reason) =
        parse_enabled(cx, &v, kind, command.is_some(), name_span.clone());
    warn_audio(cx, &v, kind, model.as_deref(), command.is_some(), name_span);
    let env = parse_env(cx, &v);
    let probe = parse_probe(cx, &v, kind);
    let restart = parse_restart(cx, &v, kind);
    let quantization = v.get("quantization").and_then(|q| {
        q.as_bool()
            .map(|b| b.to_string())
            .or_else(|| q.as_str().map(str::to_string))
            .or_else(|| q.as_integer().map(|i| i.to_string()))
    });
    let expect = parse_expectations(cx, &v, kind);
    let (on_demand, exclusive_group) = parse_on_demand(cx, &v, backend_port.is_some());
    // A thinking budget is enforced by mlx_vlm.server (ocr); mlx_lm.server has no such option.
    if v.get("thinking_budget").is_some() && kind.is_chat() && command.is_none() {
        cx.warn(
            v.key_span("thinking_budget"),
            format!("thinking_budget in {where_} is not enforced: mlx_lm.server has no thinking budget"),
            Some("disable_thinking_tags = true turns thinking off; mlx_vlm.server (kind = \"ocr\") enforces a budget".to_string()),
        );
    }
    let distributed = (kind == Kind::Distributed)
        .then(|| parse_distributed(cx, &v, hosts, backend_port.is_some()))
        .flatten();

    let spec = ServiceSpec {
        name: name.to_string(),
        kind,
        enabled,
        disabled_reason,
        port,
        backend_port,
        model,
        aliases: v.alias_list(cx, "aliases").unwrap_or_default(),
        allow_any_model: v.bool(cx, "allow_any_model").unwrap_or(false),
        max_tokens: v.int(cx, "max_tokens").map(|n| n as u32),
        temperature: v.float(cx, "temperature"),
        top_p: v.float(cx, "top_p"),
        frequency_penalty: v.float(cx, "frequency_penalty"),
        presence_penalty: v.float(cx, "presence_penalty"),
        filter_reasoning: v.bool(cx, "filter_reasoning").unwrap_or(false),
        thinking_budget: v.int(cx, "thinking_budget").map(|n| n as u32),
        disable_thinking_tags: v.bool(cx, "disable_thinking_tags").unwrap_or(false),
        batch_size: v.int(cx, "batch_size").map(|n| n as u32),
        max_seq_length: v.int(cx, "max_seq_length").map(|n| n as u32),
        quantization,
        context_length: v.int(cx, "context_length").map(|n| n as u32),
        default_voice: v.str(cx, "default_voice").or_else(|| v.str(cx, "voice")),
        language: v.str(cx, "language").filter(|l| !l.is_empty()),
        max_concurrency: v.int(cx, "max_concurrency").map(|n| n as u32),
        request_timeout_s: v.float(cx, "request_timeout_s"),
        expect,
        command,
        python: v.str(cx, "python"),
        env,
        cwd: v.str(cx, "cwd").map(PathBuf::from),
        probe,
        ready_timeout_s: v.float(cx, "ready_timeout_s").unwrap_or(600.0),
        stop_timeout_s: v.float(cx, "stop_timeout_s").unwrap_or(10.0),
        restart,
        backoff_max_s: v.float(cx, "backoff_max_s").unwrap_or(60.0),
        max_start_failures: v.int(cx, "max_start_failures").unwrap_or(3) as u32,
        liveness_interval_s: v.float(cx, "liveness_interval_s").unwrap_or(10.0),
        liveness_failures: v.int(cx, "liveness_failures").unwrap_or(3) as u32,
        on_demand,
        idle_stop_s: v.float(cx, "idle_stop_s"),
        load_timeout_s: v.float(cx, "load_timeout_s").unwrap_or(300.0),
        exclusive_group,
        memory_bytes: v
            .float(cx, "memory_gb")
            .map(|gb| (gb * super::app::GB) as u64),
        max_footprint_bytes: v
            .float(cx, "max_footprint_gb")
            .map(|gb| (gb * super::app::GB) as u64),
        distributed,
        positions: Positions(positions),
    };
    Some(spec)
}

/// A service's name names its log files and CLI arguments: letters, digits, `-` and `_`.
fn check_name(cx: &mut Ctx, name: &str, span: Option<Range<usize>>) {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        cx.error(
            span,
            format!("service name `{name}` may only use letters, digits, `-` and `_`"),
            Some("it names log files and CLI arguments".to_string()),
        );
    }
}

/// `command`: not empty, and only the placeholders mlx-box fills in.
fn parse_command(cx: &mut Ctx, v: &TableView) -> Option<Vec<String>> {
    let where_ = &v.where_;
    let cmd = v.str_list(cx, "command")?;
    let span = || v.get("command").and_then(value_span);
    if cmd.is_empty() {
        cx.error(
            span(),
            format!("`command` in {where_} is empty"),
            Some("give the program and its arguments, e.g. [\"{python}\", \"server.py\", \"--port\", \"{port}\"]".to_string()),
        );
    }
    for arg in &cmd {
        let mut rest = arg.as_str();
        while let Some(i) = rest.find('{') {
            let tail = &rest[i..];
            let end = tail.find('}').map(|e| e + 1).unwrap_or(tail.len());
            let ph = &tail[..end];
            if !PLACEHOLDERS.contains(&ph) {
                cx.error(
                    span(),
                    format!("unknown placeholder `{ph}` in `command` of {where_}"),
                    Some(format!("known placeholders: {}", PLACEHOLDERS.join(" "))),
                );
            }
            rest = &tail[end..];
        }
    }
    Some(cmd)
}

/// `kind`, or the one the name and the command suggest.
fn parse_kind(cx: &mut Ctx, v: &TableView, name: &str, has_command: bool) -> Kind {
    let Some(k) = v.str(cx, "kind") else {
        return Kind::infer(name, has_command);
    };
    Kind::parse(&k).unwrap_or_else(|| {
        cx.error(
            v.get("kind").and_then(value_span),
            format!("unknown kind `{k}` in {}", v.where_),
            Some(format!("use one of: {}", Kind::NAMES.join(", "))),
        );
        Kind::infer(name, has_command)
    })
}

/// `model`: required unless a command service's command does not use `{model}`.
fn parse_model(
    cx: &mut Ctx,
    v: &TableView,
    kind: Kind,
    command: Option<&[String]>,
    span: Option<Range<usize>>,
) -> Option<String> {
    let model = v.str(cx, "model");
    let needs_model = command
        .map(|c| c.iter().any(|a| a.contains("{model}")))
        .unwrap_or(!matches!(kind, Kind::Command));
    if model.is_none() && needs_model {
        cx.error(
            span,
            format!("{} has no `model`", v.where_),
            Some("add `model = \"mlx-community/Qwen3-0.6B-4bit\"` (a Hugging Face id or a local path)".to_string()),
        );
    }
    model
}

/// `port` and `backend_port`: at least one.
fn parse_ports(
    cx: &mut Ctx,
    v: &TableView,
    span: Option<Range<usize>>,
) -> (Option<u16>, Option<u16>) {
    let port = v.port(cx, "port");
    let backend_port = v.port(cx, "backend_port");
    let none_given = v.get("port").is_none() && v.get("backend_port").is_none();
    if port.is_none() && backend_port.is_none() && none_given {
        cx.error(
            span,
            format!("{} has no `port`", v.where_),
            Some("add `port = 8080` (and `backend_port` if a proxy sits in front)".to_string()),
        );
    }
    (port, backend_port)
}

/// `enabled`, and why not: a command service without a command cannot be launched.
fn parse_enabled(
    cx: &mut Ctx,
    v: &TableView,
    kind: Kind,
    has_command: bool,
    span: Option<Range<usize>>,
) -> (bool, Option<String>) {
    let enabled = v.bool(cx, "enabled").unwrap_or(true);
    if !has_command && kind == Kind::Command {
        cx.warn(
            span,
            format!("{} ({}) has no `command`, so mlx-box cannot launch it", v.where_, kind.as_str()),
            Some("add `command = [\"{python}\", \"your-server.py\", \"--port\", \"{port}\"]`, or `enabled = false`".to_string()),
        );
        return (
            false,
            Some(format!("no `command` for this {} service", kind.as_str())),
        );
    }
    (
        enabled,
        (!enabled).then(|| "enabled = false in settings.toml".to_string()),
    )
}

/// What mlx_audio.server needs that a config may miss: a voice for models with named voices, and a
/// model it can load.
fn warn_audio(
    cx: &mut Ctx,
    v: &TableView,
    kind: Kind,
    model: Option<&str>,
    has_command: bool,
    span: Option<Range<usize>>,
) {
    let where_ = &v.where_;
    // Models with named voices (Qwen3-TTS CustomVoice) refuse a request that names none.
    if kind == Kind::Tts
        && !has_command
        && v.get("default_voice").is_none()
        && v.get("voice").is_none()
    {
        cx.warn(
            span,
            format!("{where_} has no `default_voice`: a request that names no voice fails on models with named voices (Qwen3-TTS CustomVoice), and so does the readiness check"),
            Some("add `default_voice = \"serena\"` (one of the model's voices)".to_string()),
        );
    }
    // mlx_audio.server loads what a request's `model` names: a Hugging Face id or a local directory.
    // The original mlx-box's short names ("small.en") were its own server's.
    if let (Some(m), true, false) = (model, matches!(kind, Kind::Tts | Kind::Stt), has_command) {
        if !m.contains('/') && !std::path::Path::new(m).is_dir() {
            let example = if kind == Kind::Tts {
                "mlx-community/Qwen3-TTS-12Hz-0.6B-CustomVoice-8bit"
            } else {
                "mlx-community/whisper-large-v3-turbo-asr-fp16"
            };
            cx.warn(
                v.get("model").and_then(value_span),
                format!("model `{m}` in {where_} is neither a Hugging Face id nor a local directory: mlx_audio.server cannot load it"),
                Some(format!("use an MLX conversion such as `{example}`, or the path of a downloaded model")),
            );
        }
    }
}

/// `env`: a table of strings.
fn parse_env(cx: &mut Ctx, v: &TableView) -> BTreeMap<String, String> {
    let Some(item) = v.get("env") else {
        return BTreeMap::new();
    };
    let Some(et) = item.as_table_like() else {
        v.mismatch(
            cx,
            "env",
            item,
            "a table of strings",
            "{ HF_HOME = \"/Volumes/models\" }",
        );
        return BTreeMap::new();
    };
    let mut m = BTreeMap::new();
    for (k, val) in et.iter() {
        match val.as_str() {
            Some(s) => {
                m.insert(k.to_string(), s.to_string());
            }
            None => cx.error(
                value_span(val),
                format!("env `{k}` in {} must be a string", v.where_),
                Some(format!("quote it: {k} = \"...\"")),
            ),
        }
    }
    m
}

/// `probe`, or the kind's.
fn parse_probe(cx: &mut Ctx, v: &TableView, kind: Kind) -> Probe {
    let Some(p) = v.str(cx, "probe") else {
        return Probe::for_kind(kind);
    };
    Probe::parse(&p).unwrap_or_else(|| {
        cx.error(
            v.get("probe").and_then(value_span),
            format!("unknown probe `{p}` in {}", v.where_),
            Some(
                "use \"chat\", \"embedding\", \"tcp\" or an HTTP path such as \"/health\""
                    .to_string(),
            ),
        );
        Probe::Tcp
    })
}

/// `restart`. mlx.launch exits with status 0 when a rank dies (it stops the others and returns): for a
/// distributed unit, any exit is a failure.
fn parse_restart(cx: &mut Ctx, v: &TableView, kind: Kind) -> RestartPolicy {
    let Some(r) = v.str(cx, "restart") else {
        return if kind == Kind::Distributed {
            RestartPolicy::Always
        } else {
            RestartPolicy::OnFailure
        };
    };
    RestartPolicy::parse(&r).unwrap_or_else(|| {
        cx.error(
            v.get("restart").and_then(value_span),
            format!("unknown restart policy `{r}` in {}", v.where_),
            Some("use \"on-failure\", \"always\" or \"never\"".to_string()),
        );
        RestartPolicy::OnFailure
    })
}

/// `on_demand` and `exclusive_group`. On demand, a request must pass through mlx-box to load the
/// service: it needs the proxy (`backend_port`); a group's services load one at a time, on request.
fn parse_on_demand(cx: &mut Ctx, v: &TableView, proxied: bool) -> (bool, Option<String>) {
    let where_ = &v.where_;
    let on_demand = v.bool(cx, "on_demand").unwrap_or(false);
    if on_demand && !proxied {
        cx.error(
            v.key_span("on_demand"),
            format!("{where_} is on_demand but has no `backend_port`: requests must pass through mlx-box's proxy to load it"),
            Some("add `backend_port = <a free port>` for the server, keep `port` for clients".to_string()),
        );
    }
    let exclusive_group = v.str(cx, "exclusive_group").filter(|g| !g.is_empty());
    if exclusive_group.is_some() && !on_demand {
        cx.error(
            v.key_span("exclusive_group"),
            format!("{where_} has an exclusive_group but is not on_demand: a group's services are loaded one at a time, on request"),
            Some("add `on_demand = true`, or remove exclusive_group".to_string()),
        );
    }
    (on_demand, exclusive_group)
}

/// Ranks at most: two Mac Studios to a handful, each maybe with a few ranks.
const MAX_RANKS: usize = 64;

/// `hosts`, `backend`, `pipeline` of a `kind = "distributed"` service.
fn parse_distributed(
    cx: &mut Ctx,
    v: &TableView,
    hosts: &[HostSpec],
    proxied: bool,
) -> Option<DistributedSpec> {
    let where_ = &v.where_;
    let names = v.str_list(cx, "hosts").unwrap_or_default();
    let span = v.get("hosts").and_then(value_span).or(v.key_span("kind"));
    if names.len() < 2 || names.len() > MAX_RANKS {
        cx.error(
            span,
            format!(
                "{where_} is distributed over {} ranks: it needs 2 to {MAX_RANKS}",
                names.len()
            ),
            Some("hosts = [\"local\", \"studio-2\"] (or [\"local\", \"local\"] to try it on one Mac)".into()),
        );
        return None;
    }
    let mut ranks = vec![];
    for n in &names {
        if n == "local" || n == "localhost" {
            ranks.push(RankHost::Local);
            continue;
        }
        let Some(h) = hosts.iter().find(|h| &h.name == n) else {
            cx.error(
                span.clone(),
                format!("{where_} hosts: no host `{n}` in [hosts] (or `local` for this Mac)"),
                Some(format!("`mlx-box hosts add {n} ADDRESS` adds it")),
            );
            return None;
        };
        let address = h
            .address
            .rsplit_once(':')
            .map_or(h.address.as_str(), |(a, _)| a)
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        if address.parse::<std::net::IpAddr>().is_err() {
            cx.warn(
                span.clone(),
                format!("{where_}: host `{n}` has the address `{address}`, not an IP: the ring backend connects to IPs"),
                Some(format!("give [hosts.{n}] address as IP:PORT")),
            );
        }
        ranks.push(RankHost::Host {
            name: n.clone(),
            address,
        });
    }
    if !proxied {
        cx.warn(
            v.key_span("kind"),
            format!("{where_} has no backend_port: rank 0 serves the API on `port` itself"),
            None,
        );
    }
    let backend = v.str(cx, "backend").unwrap_or_else(|| "ring".into());
    if !matches!(backend.as_str(), "ring" | "jaccl") {
        cx.error(
            v.get("backend").and_then(value_span),
            format!("{where_} backend = \"{backend}\": mlx.launch's backends for Macs are ring and jaccl"),
            Some("ring (TCP: Ethernet, Thunderbolt bridge) or jaccl (Thunderbolt 5 RDMA)".into()),
        );
        return None;
    }
    Some(DistributedSpec {
        ranks,
        backend,
        pipeline: v.bool(cx, "pipeline").unwrap_or(false),
    })
}

/// The `expect_*` thresholds; one that cannot apply to the service's kind (its declaration's `kinds`) is
/// a warning (it is ignored).
fn parse_expectations(cx: &mut Ctx, v: &TableView, kind: Kind) -> mlxbox_api::config::Expectations {
    let expect = schema::KEYS
        .iter()
        .filter(|k| k.section == Section::Services && k.name.starts_with("expect_"));
    for k in expect {
        if v.get(k.name).is_some() && !k.applies_to(kind) {
            cx.warn(
                v.key_span(k.name),
                format!(
                    "`{}` in {} does not apply to a {} service (ignored)",
                    k.name,
                    v.where_,
                    kind.as_str()
                ),
                Some(format!(
                    "{} services take {}",
                    kind.as_str(),
                    schema::expect_keys(kind).join(", ")
                )),
            );
        }
    }
    let mut get = |key: &str| {
        let applies = schema::find(Section::Services, key).is_some_and(|k| k.applies_to(kind));
        let x = v.float(cx, key);
        if x == Some(0.0) {
            cx.warn(
                v.get(key).and_then(value_span),
                format!("`{key}` = 0 in {} checks nothing", v.where_),
                Some("remove it, or give the figure the service must reach".to_string()),
            );
        }
        x.filter(|_| applies)
    };
    mlxbox_api::config::Expectations {
        gen_tok_s: get("expect_gen_tok_s"),
        ttft_ms: get("expect_ttft_ms"),
        output_tok_s: get("expect_output_tok_s"),
        parallel_efficiency: get("expect_parallel_efficiency"),
        inputs_s: get("expect_inputs_s"),
        rtf: get("expect_rtf"),
    }
}

/// Two services (or a service and the SSH port) on one port is an error: the second server could not bind.
pub(super) fn check_ports(cx: &mut Ctx, services_item: Option<&Item>, _services: &[ServiceSpec]) {
    let Some(t) = services_item.and_then(|i| i.as_table_like()) else {
        return;
    };
    let mut seen: HashMap<i64, String> = HashMap::new();
    for (name, item) in t.iter() {
        let Some(st) = item.as_table_like() else {
            continue;
        };
        if st.get("enabled").and_then(|e| e.as_bool()) == Some(false) {
            continue;
        }
        for key in ["port", "backend_port"] {
            let Some(pi) = st.get(key) else { continue };
            let Some(p) = pi.as_integer() else { continue };
            let here = format!("services.{name}.{key}");
            if let Some(first) = seen.get(&p) {
                cx.error(
                    value_span(pi),
                    format!("port {p} of `{here}` is already used by `{first}`"),
                    Some("give every service its own port".to_string()),
                );
            } else {
                seen.insert(p, here);
            }
        }
    }
}
