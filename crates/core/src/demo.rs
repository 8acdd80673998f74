//! The demo profile (`mlx-box up --demo`): needs nothing downloaded but Python packages. Makes, once and
//! cached, a Python environment with pinned mlx + mlx-lm and tiny local models (a Qwen3-architecture chat
//! model trained to think only when thinking is enabled, and an embedding model), then writes a
//! settings.toml that supervises real servers on them.

use crate::paths;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const REQUIREMENTS: &str = include_str!("../../../python/requirements.txt");
pub const MAKE_TINY_MODELS_PY: &str = include_str!("../../../python/make_tiny_models.py");
/// Packages the tests use against the demo (the official `openai` client).
pub const TEST_REQUIREMENTS: &str = include_str!("../../../python/requirements-test.txt");

#[derive(Debug, Clone)]
pub struct DemoEnv {
    pub dir: PathBuf,
    pub python: PathBuf,
    pub models: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("no working Python ≥ 3.10 with venv found (tried $MLXBOX_PYTHON, python3.12, python3.11, python3.13, python3); install one (Debian: apt-get install python3 python3-venv) or set MLXBOX_PYTHON")]
    NoPython,
    #[error("{step} failed ({status}); see {log} for its output")]
    Step {
        step: String,
        status: String,
        log: PathBuf,
    },
    #[error("demo cache {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

fn key() -> String {
    let mut text = String::from(REQUIREMENTS);
    text.push_str(MAKE_TINY_MODELS_PY);
    text.push_str(std::env::consts::OS);
    text.push_str(std::env::consts::ARCH);
    crate::config::content_hash(text.as_bytes())[..12].to_string()
}

/// The first Python ≥ 3.10 with `venv` that actually runs (a pyenv shim can exist for a version that is
/// not installed).
fn find_python() -> Option<String> {
    let env = std::env::var_os("MLXBOX_PYTHON").map(|p| p.to_string_lossy().into_owned());
    let works = |c: &str| {
        Command::new(c)
            .args([
                "-c",
                "import sys, venv; sys.exit(0 if sys.version_info >= (3, 10) else 1)",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    env.into_iter()
        .chain(["python3.12", "python3.11", "python3.13", "python3"].map(String::from))
        .find(|c| works(c))
}

/// Makes (or finds in the cache) the demo's Python environment and models. `say` gets progress lines.
/// Safe to call from several processes at once: they wait on a lock and the first one builds.
pub fn ensure_env(say: &dyn Fn(&str)) -> Result<DemoEnv, DemoError> {
    let dir = paths::cache_dir().join(format!("demo-{}", key()));
    let io = |e| DemoError::Io {
        dir: dir.clone(),
        source: e,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let env = DemoEnv {
        python: dir.join("venv/bin/python"),
        models: dir.join("models"),
        dir: dir.clone(),
    };
    if dir.join("READY").exists() {
        ensure_test_packages(&env)?;
        return Ok(env);
    }
    let lock = std::fs::File::create(dir.join(".lock")).map_err(io)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&lock);
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        say("another mlx-box is building the demo environment: waiting for it…");
        unsafe { libc::flock(fd, libc::LOCK_EX) };
    }
    if dir.join("READY").exists() {
        ensure_test_packages(&env)?;
        return Ok(env);
    }
    let log = dir.join("setup.log");
    let run = |step: &str, cmd: &mut Command| -> Result<(), DemoError> {
        say(step);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let status = cmd.stdout(out).stderr(err).status().map_err(io)?;
        if status.success() {
            Ok(())
        } else {
            Err(DemoError::Step {
                step: step.to_string(),
                status: status.to_string(),
                log: log.clone(),
            })
        }
    };
    let python = find_python().ok_or(DemoError::NoPython)?;
    let venv = dir.join("venv");
    if !env.python.exists() {
        run(
            &format!(
                "creating Python environment in {} ({python} -m venv)",
                venv.display()
            ),
            Command::new(&python).arg("-m").arg("venv").arg(&venv),
        )?;
    }
    std::fs::write(dir.join("requirements.txt"), REQUIREMENTS).map_err(io)?;
    std::fs::write(dir.join("make_tiny_models.py"), MAKE_TINY_MODELS_PY).map_err(io)?;
    // uv installs the pinned wheels in seconds; plain pip is the fallback.
    let uv = dir.join("venv/bin/uv");
    let have_uv = uv.exists()
        || run(
            "installing uv (fast installer)",
            Command::new(&env.python).args(["-m", "pip", "install", "--quiet", "uv==0.13.9"]),
        )
        .is_ok();
    if have_uv {
        run(
            "installing pinned mlx, mlx-lm, tokenizers (uv)",
            Command::new(&uv)
                .args(["pip", "install", "--quiet", "--python"])
                .arg(&env.python)
                .arg("-r")
                .arg(dir.join("requirements.txt")),
        )?;
    } else {
        run(
            "installing pinned mlx, mlx-lm, tokenizers (pip)",
            Command::new(&env.python)
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(dir.join("requirements.txt")),
        )?;
    }
    run(
        "making and training the tiny models (about a minute, once)",
        Command::new(&env.python)
            .arg(dir.join("make_tiny_models.py"))
            .arg("--out")
            .arg(&env.models),
    )?;
    let mut f = std::fs::File::create(dir.join("READY")).map_err(io)?;
    let _ = writeln!(f, "{}", key());
    ensure_test_packages(&env)?;
    say("demo environment ready");
    Ok(env)
}

/// Installs `python/requirements-test.txt` into the demo env once (a marker file per content), so an
/// existing cache gains them without rebuilding the models.
pub fn ensure_test_packages(env: &DemoEnv) -> Result<(), DemoError> {
    let marker = env.dir.join(format!(
        "TEST-{}",
        &crate::config::content_hash(TEST_REQUIREMENTS.as_bytes())[..12]
    ));
    if marker.exists() {
        return Ok(());
    }
    let io = |e| DemoError::Io {
        dir: env.dir.clone(),
        source: e,
    };
    let req = env.dir.join("requirements-test.txt");
    std::fs::write(&req, TEST_REQUIREMENTS).map_err(io)?;
    let log = env.dir.join("setup.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    let uv = env.dir.join("venv/bin/uv");
    let mut cmd = if uv.exists() {
        let mut c = Command::new(uv);
        c.args(["pip", "install", "--quiet", "--python"])
            .arg(&env.python);
        c
    } else {
        let mut c = Command::new(&env.python);
        c.args(["-m", "pip", "install", "--quiet"]);
        c
    };
    let status = cmd
        .arg("-r")
        .arg(&req)
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(io)?;
    if !status.success() {
        return Err(DemoError::Step {
            step: "installing the test packages (python/requirements-test.txt)".into(),
            status: status.to_string(),
            log,
        });
    }
    std::fs::write(&marker, TEST_REQUIREMENTS).map_err(io)?;
    Ok(())
}

fn free_port(preferred: u16, taken: &[u16]) -> u16 {
    let ok = |p: u16| !taken.contains(&p) && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    if ok(preferred) {
        return preferred;
    }
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if p != 0 && ok(p) {
            return p;
        }
    }
}

/// The demo's settings.toml text for `env`, on free ports (47310 and up when free).
pub fn settings_text(env: &DemoEnv) -> String {
    let mut taken = vec![];
    let mut port = |pref: u16| {
        let p = free_port(pref, &taken);
        taken.push(p);
        p
    };
    let (p1, p2, p3) = (port(47311), port(47312), port(47314));
    let models = env.models.display();
    let python = env.python.display();
    format!(
        r#"# mlx-box demo profile: real servers on tiny local models that mlx-box made itself (no download).
# Edit it while `mlx-box up --demo` runs: changes apply on save. Every key is documented in
# config/settings.toml.example.

[server]
host = "127.0.0.1"

[app]
python = "{python}"

# A chat model that thinks (<think>…</think>) before it answers.
[services.chat]
port = {p1}
model = "{models}/chat"
max_tokens = 64
temperature = 0.0
ready_timeout_s = 120
env = {{ HF_HUB_OFFLINE = "1" }}

# The same model with thinking turned off in its chat template (mlx_lm --chat-template-args).
[services.chat-nothink]
port = {p2}
model = "{models}/chat"
max_tokens = 64
temperature = 0.0
disable_thinking_tags = true
ready_timeout_s = 120
env = {{ HF_HUB_OFFLINE = "1" }}

# An OpenAI-compatible /v1/embeddings server (shipped with mlx-box) on a tiny model.
[services.embedding]
port = {p3}
model = "{models}/embed"
batch_size = 32
max_seq_length = 512
ready_timeout_s = 120
env = {{ HF_HUB_OFFLINE = "1" }}
"#
    )
}

/// Writes `<state_dir>/demo/settings.toml` unless it exists for this very environment (user edits kept).
pub fn write_settings(state_dir: &Path, env: &DemoEnv) -> Result<PathBuf, DemoError> {
    let dir = state_dir.join("demo");
    let io = |e| DemoError::Io {
        dir: dir.clone(),
        source: e,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let path = dir.join("settings.toml");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if !current.contains(&env.models.display().to_string()) {
        crate::config::atomic_write(&path, settings_text(env).as_bytes()).map_err(io)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_settings_are_valid() {
        let env = DemoEnv {
            dir: "/c".into(),
            python: "/c/venv/bin/python".into(),
            models: "/c/models".into(),
        };
        let text = settings_text(&env);
        let (s, d) = crate::config::parse_settings(Path::new("demo.toml"), &text);
        let s = s.unwrap_or_else(|| panic!("{d:?}"));
        assert!(d.is_empty(), "{d:?}");
        let kinds: Vec<_> = s
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.kind.as_str(), s.disable_thinking_tags))
            .collect();
        assert_eq!(
            kinds,
            [
                ("chat", "chat", false),
                ("chat-nothink", "chat", true),
                ("embedding", "embedding", false)
            ]
        );
    }
}
