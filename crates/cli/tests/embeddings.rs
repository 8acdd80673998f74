//! The embedding server pools as the model's sentence-transformers config says: a copy of the
//! demo's tiny embedding model with the modules.json of Qwen3-Embedding (last-token pooling, normalised)
//! served by mlx-box gives the vectors a reference computes on its own from the same weights — mlx_lm's
//! forward pass, then last-token pooling and L2 normalisation in numpy, with sentence-transformers'
//! tokenization (special tokens on) — cosine ≥ 0.999; mean pooling would not. `quantization = true`
//! serves int8 weights (`--quantize-bits 8`), close to the float vectors, and the served check agrees.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const INPUTS: [&str; 3] = [
    "hello world",
    "the memory a model needs grows with its context",
    "a",
];

const REFERENCE_PY: &str = r#"
import json, sys
import numpy as np
import mlx.core as mx
from mlx_lm import load
model, tok = load(sys.argv[1])
out = {"last": [], "mean": []}
for text in json.loads(sys.argv[2]):
    ids = tok.encode(text, add_special_tokens=True)
    h = np.array(model.model(mx.array([ids])).astype(mx.float32))[0]
    for name, v in (("last", h[-1]), ("mean", h.mean(axis=0))):
        out[name].append((v / max(np.linalg.norm(v), 1e-12)).tolist())
print(json.dumps(out))
"#;

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

fn vectors(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn embeddings_follow_the_models_sentence_transformers_pooling() {
    let env = demo_env();
    let python = env.python.display().to_string();
    // The tiny model as a sentence-transformers model with Qwen3-Embedding's modules.
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("st-embed");
    std::fs::create_dir_all(st.join("1_Pooling")).unwrap();
    for f in std::fs::read_dir(env.models.join("embed")).unwrap() {
        let f = f.unwrap().path();
        std::os::unix::fs::symlink(&f, st.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        st.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
    )
    .unwrap();
    std::fs::write(
        st.join("1_Pooling/config.json"),
        r#"{"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":false,"pooling_mode_max_tokens":false,"pooling_mode_lasttoken":true,"include_prompt":true}"#,
    )
    .unwrap();
    let (p1, p2) = (free_port(), free_port());
    let svc = |name: &str, port: u16, extra: &str| {
        format!(
            "[services.{name}]\nkind = \"embedding\"\nport = {port}\nmodel = \"{}\"\nready_timeout_s = 120\n{extra}\n",
            st.display()
        )
    };
    let d = Daemon::start(&format!(
        "[app]\npython = \"{python}\"\n{}{}",
        svc("st", p1, ""),
        svc("st8", p2, "quantization = true")
    ));
    d.wait_state("st", "ready", Duration::from_secs(120));
    d.wait_state("st8", "ready", Duration::from_secs(120));
    let embed = |port: u16| {
        let (code, _, body) = http(
            port,
            "POST",
            "/v1/embeddings",
            &[("Content-Type", "application/json")],
            &serde_json::json!({"input": INPUTS}).to_string(),
        );
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect::<Vec<f64>>()
            })
            .collect::<Vec<_>>()
    };
    let served = embed(p1);
    let reference = python_json(
        &env.python,
        REFERENCE_PY,
        &[
            st.to_str().unwrap(),
            &serde_json::to_string(&INPUTS).unwrap(),
        ],
    );
    let (last, mean) = (vectors(&reference["last"]), vectors(&reference["mean"]));
    let mut mean_differs = false;
    for i in 0..INPUTS.len() {
        let c = cosine(&served[i], &last[i]);
        assert!(
            c >= 0.999,
            "input {i}: cosine {c} to the last-token reference"
        );
        let norm: f64 = served[i].iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
        mean_differs |= cosine(&served[i], &mean[i]) < 0.999;
    }
    assert!(
        mean_differs,
        "mean pooling gives the same vectors here: the test could not tell them apart"
    );
    assert!(d
        .service_log("st")
        .contains("pooling: lasttoken, normalize: True, special tokens: True"));
    // int8 weights: launched with --quantize-bits 8, close to the float vectors, no served-model alert.
    let q = embed(p2);
    for i in 0..INPUTS.len() {
        let c = cosine(&q[i], &served[i]);
        assert!(c >= 0.98, "int8 input {i}: cosine {c} to float");
    }
    assert!(d.service_log("st8").contains("weights: 8-bit"));
    std::thread::sleep(Duration::from_secs(11)); // the served check runs every 10 s
    let alerts = d.status()["alerts"].clone();
    assert!(
        !alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "served-model:st8"),
        "{alerts}"
    );
}
