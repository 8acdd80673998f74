//! The command line of each service: what `python -m mlx_lm server …` (or the user's `command`) gets.

use crate::config::{Kind, ServiceSpec, Settings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything that decides the process a service runs. Two equal plans mean "no restart needed".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchPlan {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    /// Files the process reads, written before it starts (the hostfile of a distributed service).
    #[serde(default)]
    pub files: BTreeMap<PathBuf, String>,
}

impl LaunchPlan {
    /// Stable hash of argv + env + cwd, persisted in the state file so a restarted daemon adopts only a
    /// process that runs exactly what the config asks for.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for a in &self.argv {
            h.update(a.as_bytes());
            h.update([0]);
        }
        for (k, v) in &self.env {
            h.update(k.as_bytes());
            h.update([b'=']);
            h.update(v.as_bytes());
            h.update([0]);
        }
        if let Some(c) = &self.cwd {
            h.update(c.to_string_lossy().as_bytes());
        }
        for (path, text) in &self.files {
            h.update(path.to_string_lossy().as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..12])
    }
}

/// Where helper scripts that mlx-box ships (the embedding server) are written at daemon start.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub scripts_dir: PathBuf,
    /// Interpreter used when neither the service nor `[app]` names one.
    pub default_python: String,
}

impl Runtime {
    pub fn embed_server(&self) -> PathBuf {
        self.scripts_dir.join("embed_server.py")
    }
    pub fn vlm_server(&self) -> PathBuf {
        self.scripts_dir.join("vlm_server.py")
    }
    pub fn audio_server(&self) -> PathBuf {
        self.scripts_dir.join("audio_server.py")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LaunchError {
    #[error("service `{0}` has no port; add `port` (or `backend_port`) to [services.{0}]")]
    NoPort(String),
    #[error("service `{0}` has no model; add `model` to [services.{0}]")]
    NoModel(String),
    #[error("service `{name}` cannot be launched: {reason}")]
    NotLaunchable { name: String, reason: String },
}

/// The only origin a backend is told to allow: none can match it.
pub const NO_ORIGIN: &str = "https://no-cross-origin.invalid";

/// Builds the launch plan of one service.
pub fn plan(
    spec: &ServiceSpec,
    settings: &Settings,
    rt: &Runtime,
) -> Result<LaunchPlan, LaunchError> {
    let port = spec
        .bind_port()
        .ok_or_else(|| LaunchError::NoPort(spec.name.clone()))?;
    // A backend behind the proxy listens on loopback only; a service without a proxy binds [server] host.
    let host = if spec.backend_port.is_some() {
        "127.0.0.1".to_string()
    } else {
        settings.server.host.clone()
    };
    let python = spec
        .python
        .clone()
        .or_else(|| settings.app.python.clone())
        .unwrap_or_else(|| rt.default_python.clone());
    let l = Launch {
        spec,
        settings,
        rt,
        python,
        host,
        port,
    };
    let mut files = BTreeMap::new();
    let argv = match &spec.command {
        Some(tpl) => l.command_argv(tpl),
        None => match spec.kind {
            Kind::Chat => l.chat(l.model()?),
            Kind::Distributed => l.distributed_argv(&mut files)?,
            Kind::Embedding => l.embedding_argv()?,
            Kind::Ocr => l.ocr_argv()?,
            Kind::Tts | Kind::Stt => l.audio_argv(),
            Kind::Command => {
                return Err(LaunchError::NotLaunchable {
                    name: spec.name.clone(),
                    reason: spec
                        .disabled_reason
                        .clone()
                        .unwrap_or_else(|| "it needs a `command`".into()),
                })
            }
        },
    };
    let mut env = spec.env.clone();
    // Unbuffered output, so a crash's last words reach the log before the process dies.
    env.entry("PYTHONUNBUFFERED".into())
        .or_insert_with(|| "1".into());
    Ok(LaunchPlan {
        argv,
        env,
        cwd: spec.cwd.clone(),
        host: l.host,
        port,
        files,
    })
}

/// What every kind's command line is made from.
struct Launch<'a> {
    spec: &'a ServiceSpec,
    settings: &'a Settings,
    rt: &'a Runtime,
    python: String,
    host: String,
    port: u16,
}

impl Launch<'_> {
    fn model(&self) -> Result<String, LaunchError> {
        self.spec
            .model
            .clone()
            .ok_or_else(|| LaunchError::NoModel(self.spec.name.clone()))
    }

    fn max_tokens(&self) -> String {
        self.spec.max_tokens.unwrap_or(512).to_string()
    }

    fn chat(&self, model: String) -> Vec<String> {
        let (spec, settings) = (self.spec, self.settings);
        let python = self.python.clone();
        chat_argv(
            spec,
            settings,
            python,
            model,
            &self.host,
            self.port,
            self.max_tokens(),
        )
    }

    /// `--host H --port P`.
    fn listen_args(&self) -> [String; 4] {
        let (host, port) = (self.host.clone(), self.port.to_string());
        ["--host".into(), host, "--port".into(), port]
    }

    /// The user's `command`, its placeholders filled in.
    fn command_argv(&self, tpl: &[String]) -> Vec<String> {
        let model = self.spec.model.clone().unwrap_or_default();
        let (port, max_tokens) = (self.port.to_string(), self.max_tokens());
        tpl.iter()
            .map(|a| {
                a.replace("{python}", &self.python)
                    .replace("{model}", &model)
                    .replace("{host}", &self.host)
                    .replace("{port}", &port)
                    .replace("{max_tokens}", &max_tokens)
            })
            .collect()
    }

    /// `mlx.launch --backend B --hostfile F -- <the chat server>`, the hostfile written at launch.
    fn distributed_argv(
        &self,
        files: &mut BTreeMap<PathBuf, String>,
    ) -> Result<Vec<String>, LaunchError> {
        let spec = self.spec;
        let Some(d) = &spec.distributed else {
            return Err(LaunchError::NotLaunchable {
                name: spec.name.clone(),
                reason: "it has no ranks (`hosts`)".into(),
            });
        };
        let hostfile = self
            .rt
            .scripts_dir
            .join(format!("{}.hostfile.json", spec.name));
        files.insert(hostfile.clone(), hostfile_json(d));
        let mut a = vec![
            mlx_launch(&self.python),
            "--backend".into(),
            d.backend.clone(),
            "--hostfile".into(),
            hostfile.to_string_lossy().into_owned(),
            "--".into(),
        ];
        a.extend(self.chat(self.model()?));
        if d.pipeline {
            a.push("--pipeline".into());
        }
        Ok(a)
    }

    /// embed_server.py: batch size, sequence length, and `quantization = true` (the original mlx-box's
    /// int8 switch), 8 or 4: quantized at load.
    fn embedding_argv(&self) -> Result<Vec<String>, LaunchError> {
        let spec = self.spec;
        let server = self.rt.embed_server().to_string_lossy().into_owned();
        let mut a = vec![self.python.clone(), server, "--model".into(), self.model()?];
        a.extend(self.listen_args());
        if let Some(b) = spec.batch_size {
            a.extend(["--batch-size".into(), b.to_string()]);
        }
        if let Some(m) = spec.max_seq_length {
            a.extend(["--max-seq-length".into(), m.to_string()]);
        }
        if let Some(crate::config::precision::Precision::Bits(b @ (4 | 8), _)) = spec
            .quantization
            .as_deref()
            .and_then(crate::config::precision::configured_precision)
        {
            a.extend(["--quantize-bits".into(), b.to_string()]);
        }
        Ok(a)
    }

    /// mlx-vlm >= 0.7: `mlx_vlm.server --model M --host H --port P [--max-tokens N]`, through
    /// vlm_server.py, which closes its hard-coded `*` CORS.
    fn ocr_argv(&self) -> Result<Vec<String>, LaunchError> {
        let spec = self.spec;
        let server = self.rt.vlm_server().to_string_lossy().into_owned();
        let mut a = vec![self.python.clone(), server, "--model".into(), self.model()?];
        a.extend([
            "--allowed-origins".into(),
            allowed_origins(spec, self.settings),
        ]);
        a.extend(self.listen_args());
        if let Some(n) = spec.max_tokens {
            a.extend(["--max-tokens".into(), n.to_string()]);
        }
        // mlx-vlm >= 0.7.10: the context as a KV-cache bound, and a thinking budget it enforces.
        if let Some(n) = spec.context_length {
            a.extend(["--max-kv-size".into(), n.to_string()]);
        }
        if let Some(n) = spec.thinking_budget {
            a.extend(["--thinking-budget".into(), n.to_string()]);
        }
        Ok(a)
    }

    /// mlx-audio's OpenAI-compatible server: /v1/audio/speech and /v1/audio/transcriptions, the model
    /// named by each request (the proxy holds requests to this service's model). Through
    /// audio_server.py, which lets it run where MLX has no GPU.
    fn audio_argv(&self) -> Vec<String> {
        let spec = self.spec;
        let server = self.rt.audio_server().to_string_lossy().into_owned();
        let mut a = vec![self.python.clone(), server];
        a.extend(self.listen_args());
        // Its Studio UI's logs (not started): kept out of the daemon's working directory.
        let logs = self.rt.scripts_dir.join(format!("{}.mlx-audio", spec.name));
        a.extend(["--log-dir".into(), logs.to_string_lossy().into_owned()]);
        // One argument per origin (argparse nargs="+").
        a.push("--allowed-origins".into());
        a.extend(
            allowed_origins(spec, self.settings)
                .split(',')
                .map(String::from),
        );
        a
    }
}

/// `python -m mlx_lm server …` with the service's generation flags.
fn chat_argv(
    spec: &ServiceSpec,
    settings: &Settings,
    python: String,
    model: String,
    host: &str,
    port: u16,
    max_tokens: String,
) -> Vec<String> {
    let mut a = vec![python, "-m".into(), "mlx_lm".into(), "server".into()];
    a.extend(["--model".into(), model]);
    a.extend([
        "--host".into(),
        host.to_string(),
        "--port".into(),
        port.to_string(),
    ]);
    a.extend(["--max-tokens".into(), max_tokens]);
    a.extend(["--allowed-origins".into(), allowed_origins(spec, settings)]);
    if let Some(t) = spec.temperature {
        a.extend(["--temp".into(), fmt_num(t)]);
    }
    if let Some(p) = spec.top_p {
        a.extend(["--top-p".into(), fmt_num(p)]);
    }
    if spec.disable_thinking_tags {
        a.extend([
            "--chat-template-args".into(),
            r#"{"enable_thinking":false}"#.into(),
        ]);
    }
    a
}

/// The `model` a chat request sent straight to the server (the readiness probe, the benchmark; the
/// proxy splices it into what passes through it) must name: mlx_vlm.server requires one and loads
/// another model for any other value; mlx_lm.server uses its own when a request names none.
pub fn direct_model(spec: &ServiceSpec) -> Option<&str> {
    if spec.kind == Kind::Ocr && spec.command.is_none() {
        spec.model.as_deref()
    } else {
        None
    }
}

/// CORS closed: mlx_lm and mlx_audio answer `Access-Control-Allow-Origin: *` by default (mlx_vlm
/// always), which lets any web page the user visits read their replies. Behind the proxy no real origin
/// equals the one they are given (`.invalid` is reserved): the proxy answers CORS from [server]
/// cors_origins. Without a proxy, the server itself gets that list.
fn allowed_origins(spec: &ServiceSpec, settings: &Settings) -> String {
    let origins = &settings.server.cors_origins;
    if spec.backend_port.is_none() && !origins.is_empty() {
        origins.join(",")
    } else {
        NO_ORIGIN.to_string()
    }
}

/// `mlx.launch` beside the interpreter (the venv's), else on PATH.
fn mlx_launch(python: &str) -> String {
    let p = Path::new(python);
    if p.is_absolute() {
        if let Some(beside) = p.parent().map(|d| d.join("mlx.launch")) {
            if beside.exists() {
                return beside.to_string_lossy().into_owned();
            }
        }
    }
    which("mlx.launch")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mlx.launch".into())
}

/// The hostfile `mlx.launch --hostfile` reads: per rank, the host it ssh's into (127.0.0.1: run here,
/// no ssh) and the IP its ring connects to.
fn hostfile_json(d: &crate::config::DistributedSpec) -> String {
    let hosts: Vec<serde_json::Value> = d
        .ranks
        .iter()
        .map(|r| serde_json::json!({"ssh": r.address(), "ips": [r.address()]}))
        .collect();
    let file = serde_json::json!({"backend": d.backend, "envs": [], "hosts": hosts});
    serde_json::to_string_pretty(&file).unwrap_or_default()
}

fn fmt_num(x: f64) -> String {
    format!("{x}")
}

/// Finds a usable Python 3: `python3` on PATH.
pub fn default_python() -> String {
    for cand in ["python3", "python"] {
        if which(cand).is_some() {
            return cand.to_string();
        }
    }
    "python3".into()
}

pub fn which(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        return Path::new(prog).exists().then(|| PathBuf::from(prog));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_settings;

    fn rt() -> Runtime {
        Runtime {
            scripts_dir: PathBuf::from("/rt"),
            default_python: "python3".into(),
        }
    }

    fn settings(text: &str) -> Settings {
        let (s, d) = parse_settings(Path::new("s.toml"), text);
        s.unwrap_or_else(|| panic!("{d:?}"))
    }

    #[test]
    fn audio_services_run_mlx_audio_with_cors_closed() {
        let s = settings(
            "[server]\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n[services.tts]\nkind = \"tts\"\nport = 8086\nbackend_port = 8096\nmodel = \"org/tts\"\n[services.stt]\nkind = \"stt\"\nport = 8087\nmodel = \"org/whisper\"\n",
        );
        let a = plan(s.service("tts").unwrap(), &s, &rt())
            .unwrap()
            .argv
            .join(" ");
        assert!(
            a.contains("/rt/audio_server.py --host 127.0.0.1 --port 8096 --log-dir /rt/tts.mlx-audio --allowed-origins https://no-cross-origin.invalid"),
            "behind the proxy: no origin ({a})"
        );
        // Without a proxy the server answers CORS itself, one argument per origin.
        let a = plan(s.service("stt").unwrap(), &s, &rt()).unwrap().argv;
        assert_eq!(
            a[a.len() - 3..],
            [
                "--allowed-origins",
                "https://a.example",
                "https://b.example"
            ]
        );
    }

    #[test]
    fn ocr_gets_the_context_and_the_thinking_budget() {
        let s = settings(
            "[services.ocr]\nport = 8085\nmodel = \"org/vlm\"\ncontext_length = 16384\nthinking_budget = 512\nmax_tokens = 100\n",
        );
        let p = plan(s.service("ocr").unwrap(), &s, &rt()).unwrap();
        let a = p.argv.join(" ");
        assert!(
            a.contains("/rt/vlm_server.py --model org/vlm --allowed-origins https://no-cross-origin.invalid"),
            "{a}"
        );
        assert!(
            a.contains("--max-kv-size 16384") && a.contains("--thinking-budget 512"),
            "{a}"
        );
        // On an mlx_lm chat service the budget cannot be enforced: a warning at its line.
        let (_, d) = parse_settings(
            Path::new("s.toml"),
            "[services.chat]\nport = 8080\nmodel = \"m\"\nthinking_budget = 512\n",
        );
        assert!(
            d.iter()
                .any(|d| d.line == 4 && d.message.contains("not enforced")),
            "{d:?}"
        );
    }

    #[test]
    fn a_distributed_service_runs_mlx_launch_with_a_generated_hostfile() {
        let fp = "AA:".repeat(31) + "AA";
        let s = settings(&format!(
            "[hosts.studio-2]\naddress = \"198.18.0.2:9443\"\nfingerprint = \"{fp}\"\n[services.big]\nkind = \"distributed\"\nhosts = [\"local\", \"studio-2\"]\npipeline = true\nport = 8080\nbackend_port = 8081\nmodel = \"org/huge\"\npython = \"/venv/bin/python\"\n"
        ));
        let spec = s.service("big").unwrap();
        assert_eq!(spec.restart, crate::config::RestartPolicy::Always);
        let p = plan(spec, &s, &rt()).unwrap();
        let sep = p.argv.iter().position(|a| a == "--").unwrap();
        assert!(p.argv[0].ends_with("mlx.launch"), "{:?}", p.argv);
        assert_eq!(
            &p.argv[1..sep],
            ["--backend", "ring", "--hostfile", "/rt/big.hostfile.json"]
        );
        assert_eq!(
            &p.argv[sep + 1..sep + 7],
            [
                "/venv/bin/python",
                "-m",
                "mlx_lm",
                "server",
                "--model",
                "org/huge"
            ]
        );
        assert_eq!(p.argv.last().unwrap(), "--pipeline");
        let file: serde_json::Value =
            serde_json::from_str(&p.files[Path::new("/rt/big.hostfile.json")]).unwrap();
        assert_eq!(
            file["hosts"],
            serde_json::json!([
                {"ssh": "127.0.0.1", "ips": ["127.0.0.1"]},
                {"ssh": "198.18.0.2", "ips": ["198.18.0.2"]}
            ])
        );
        // The hostfile is part of what decides a restart.
        let mut other = p.clone();
        other.files.values_mut().for_each(|t| t.push(' '));
        assert_ne!(p.hash(), other.hash());
        // Too few ranks, an unknown host, an unknown backend: positioned errors.
        for (bad, why) in [
            ("hosts = [\"local\"]", "needs 2 to 64"),
            ("hosts = [\"local\", \"nowhere\"]", "no host `nowhere`"),
            (
                "hosts = [\"local\", \"local\"]\nbackend = \"mpi\"",
                "ring and jaccl",
            ),
        ] {
            let (s, d) = parse_settings(
                Path::new("s.toml"),
                &format!(
                    "[services.big]\nkind = \"distributed\"\nport = 8080\nmodel = \"m\"\n{bad}\n"
                ),
            );
            assert!(s.is_none(), "{bad}");
            assert!(
                d.iter().any(|d| d.message.contains(why) && d.line >= 2),
                "{bad}: {d:?}"
            );
        }
    }

    #[test]
    fn chat_argv_matches_mlx_box() {
        let s = settings(
            r#"[server]
host = "0.0.0.0"
[services.thinking]
port = 8083
backend_port = 8093
model = "nightmedia/Qwen3.5-122B"
max_tokens = 32768
temperature = 0.2
top_p = 0.9
frequency_penalty = 0.3
disable_thinking_tags = true
"#,
        );
        let p = plan(&s.services[0], &s, &rt()).unwrap();
        assert_eq!(
            p.argv,
            [
                "python3",
                "-m",
                "mlx_lm",
                "server",
                "--model",
                "nightmedia/Qwen3.5-122B",
                "--host",
                "127.0.0.1",
                "--port",
                "8093",
                "--max-tokens",
                "32768",
                "--allowed-origins",
                NO_ORIGIN,
                "--temp",
                "0.2",
                "--top-p",
                "0.9",
                "--chat-template-args",
                r#"{"enable_thinking":false}"#
            ]
        );
        assert_eq!(p.port, 8093);
    }

    #[test]
    fn no_backend_port_binds_server_host_and_port() {
        // (On a non-loopback host a model server needs a backend_port: validation refuses it.)
        let s = settings("[server]\nhost = \"127.0.0.2\"\n[services.fast]\nport = 8081\nmodel = \"m\"\n[app]\npython = \"/opt/py/bin/python\"\n");
        let p = plan(&s.services[0], &s, &rt()).unwrap();
        assert_eq!(p.argv[0], "/opt/py/bin/python");
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.2", 8081));
        assert!(p.argv.windows(2).any(|w| w == ["--max-tokens", "512"]));
        assert!(p
            .argv
            .ends_with(&["--allowed-origins".into(), NO_ORIGIN.into()]));
        let s = settings("[server]\nhost = \"127.0.0.2\"\ncors_origins = [\"http://localhost:3000\", \"https://app.example\"]\n[services.fast]\nport = 8081\nmodel = \"m\"\n");
        let p = plan(&s.services[0], &s, &rt()).unwrap();
        assert!(
            p.argv.ends_with(&[
                "--allowed-origins".into(),
                "http://localhost:3000,https://app.example".into()
            ]),
            "no proxy: the server answers CORS itself"
        );
    }

    #[test]
    fn embedding_and_command_templates() {
        let s = settings(
            r#"[services.embedding]
port = 8084
backend_port = 8094
model = "Qwen/Qwen3-Embedding-8B"
batch_size = 64
max_seq_length = 1024
[services.qwen]
port = 5002
model = "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit"
python = "/venv/bin/python"
command = ["{python}", "qwen_server.py", "--model={model}", "--bind", "{host}:{port}", "-n", "{max_tokens}"]
env = { HF_HOME = "/Volumes/models" }
"#,
        );
        let e = plan(&s.services[0], &s, &rt()).unwrap();
        assert_eq!(
            e.argv,
            [
                "python3",
                "/rt/embed_server.py",
                "--model",
                "Qwen/Qwen3-Embedding-8B",
                "--host",
                "127.0.0.1",
                "--port",
                "8094",
                "--batch-size",
                "64",
                "--max-seq-length",
                "1024"
            ]
        );
        let q = plan(&s.services[1], &s, &rt()).unwrap();
        assert_eq!(
            q.argv,
            [
                "/venv/bin/python",
                "qwen_server.py",
                "--model=mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit",
                "--bind",
                "127.0.0.1:5002",
                "-n",
                "512"
            ]
        );
        assert_eq!(
            q.env.get("HF_HOME").map(String::as_str),
            Some("/Volumes/models")
        );
        assert_ne!(e.hash(), q.hash());
    }
}
