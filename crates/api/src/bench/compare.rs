//! `mlx-box bench --compare A B`: two saved runs side by side, metric by metric, with deltas and which
//! way is better.

use super::report::{BenchResult, EmbedLevelResult, LevelResult, ServiceResult};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// `mlx-box bench --compare A B`: B against A, metric by metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    /// Set when the two runs sent different loads (prompt or output lengths, dataset, levels): their
    /// figures do not measure the same thing, and this says how they differ.
    #[serde(default)]
    pub load_differs: Option<String>,
    pub rows: Vec<CompareRow>,
}

/// How the loads of two runs differ, if they do.
pub fn load_difference(a: &BenchResult, b: &BenchResult) -> Option<String> {
    let describe = |r: &BenchResult| {
        let mut d = r.options.load_description();
        if let Some(ds) = &r.dataset {
            d.push_str(&format!(
                ", dataset sha256 {}",
                &ds.sha256[..ds.sha256.len().min(12)]
            ));
        }
        if r.options.requests != 0 {
            d.push_str(&format!(", {} requests a level", r.options.requests));
        }
        d
    };
    let (da, db) = (describe(a), describe(b));
    (da != db).then(|| format!("the runs sent different loads: A {da}; B {db}"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct CompareRow {
    pub service: String,
    /// The level ("c=4", "rate=2", "embed c=2").
    pub level: String,
    pub metric: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// b − a.
    pub delta: Option<f64>,
    /// (b − a) / a × 100.
    pub delta_percent: Option<f64>,
    /// Whether B is better than A on this metric (higher tok/s, lower latency); `null` when equal or
    /// unknown.
    pub better: Option<bool>,
}

fn level_key(l: &LevelResult) -> String {
    match l.rate {
        Some(r) => format!("rate={r}"),
        None => format!("c={}", l.concurrency),
    }
}

/// Per service and level present in either run: the headline metrics of A and B and their deltas.
pub fn compare(a: &BenchResult, b: &BenchResult) -> Comparison {
    type Metric = (&'static str, bool, fn(&LevelResult) -> Option<f64>);
    const CHAT: &[Metric] = &[
        ("output_tok_s", true, |l| Some(l.output_tok_s)),
        ("gen_tok_s p50", true, |l| l.gen_tok_s.map(|s| s.p50)),
        ("ttft_ms p50", false, |l| l.ttft_ms.map(|s| s.p50)),
        ("ttft_ms p99", false, |l| l.ttft_ms.map(|s| s.p99)),
        ("tpot_ms p50", false, |l| l.tpot_ms.map(|s| s.p50)),
        ("itl_ms p50", false, |l| l.itl_ms.map(|s| s.p50)),
        ("e2e_ms p50", false, |l| l.e2e_ms.map(|s| s.p50)),
        ("request_s", true, |l| Some(l.request_s)),
        ("prompt_tok_s", true, |l| l.prompt_tok_s),
        ("parallel_efficiency", true, |l| l.parallel_efficiency),
        ("output_len mean", true, |l| l.output_len.map(|s| s.mean)),
        ("goodput share", true, |l| l.goodput.map(|g| g.share)),
    ];
    type EMetric = (&'static str, bool, fn(&EmbedLevelResult) -> Option<f64>);
    const EMBED: &[EMetric] = &[
        ("inputs_s", true, |l| Some(l.inputs_s)),
        ("latency_ms p50", false, |l| l.latency_ms.map(|s| s.p50)),
        ("latency_ms p99", false, |l| l.latency_ms.map(|s| s.p99)),
    ];
    let mut rows = vec![];
    let mut names: Vec<&str> = a.services.iter().map(|s| s.name.as_str()).collect();
    for s in &b.services {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    for name in names {
        let sa = a.services.iter().find(|s| s.name == name);
        let sb = b.services.iter().find(|s| s.name == name);
        let levels = |s: Option<&ServiceResult>| s.map(|s| s.levels.clone()).unwrap_or_default();
        let (la, lb) = (levels(sa), levels(sb));
        let mut keys: Vec<String> = la.iter().map(level_key).collect();
        for l in &lb {
            if !keys.contains(&level_key(l)) {
                keys.push(level_key(l));
            }
        }
        for key in keys {
            let fa = la.iter().find(|l| level_key(l) == key);
            let fb = lb.iter().find(|l| level_key(l) == key);
            for (metric, higher, f) in CHAT {
                rows.push(row(
                    name,
                    &key,
                    metric,
                    *higher,
                    fa.and_then(f),
                    fb.and_then(f),
                ));
            }
        }
        let embeds = |s: Option<&ServiceResult>| s.map(|s| s.embedding.clone()).unwrap_or_default();
        let (ea, eb) = (embeds(sa), embeds(sb));
        let mut conc: Vec<u32> = ea.iter().chain(&eb).map(|l| l.concurrency).collect();
        conc.sort_unstable();
        conc.dedup();
        for c in conc {
            let fa = ea.iter().find(|l| l.concurrency == c);
            let fb = eb.iter().find(|l| l.concurrency == c);
            for (metric, higher, f) in EMBED {
                rows.push(row(
                    name,
                    &format!("embed c={c}"),
                    metric,
                    *higher,
                    fa.and_then(f),
                    fb.and_then(f),
                ));
            }
        }
    }
    Comparison {
        a: a.id.clone(),
        b: b.id.clone(),
        load_differs: load_difference(a, b),
        rows,
    }
}

fn row(
    service: &str,
    level: &str,
    metric: &str,
    higher_is_better: bool,
    a: Option<f64>,
    b: Option<f64>,
) -> CompareRow {
    let delta = a.zip(b).map(|(a, b)| b - a);
    let delta_percent = a
        .zip(delta)
        .filter(|(a, _)| *a != 0.0)
        .map(|(a, d)| d / a * 100.0);
    let better = delta
        .filter(|d| *d != 0.0)
        .map(|d| (d > 0.0) == higher_is_better);
    CompareRow {
        service: service.into(),
        level: level.into(),
        metric: metric.into(),
        a,
        b,
        delta,
        delta_percent,
        better,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::tests::{level, result, service};

    #[test]
    fn compare_deltas_and_direction() {
        let a = result(
            "a",
            service(vec![level(1, 100.0, 200.0), level(4, 200.0, 400.0)]),
        );
        let b = result(
            "b",
            service(vec![level(1, 120.0, 150.0), level(8, 300.0, 900.0)]),
        );
        let c = compare(&a, &b);
        let find = |lv: &str, m: &str| {
            c.rows
                .iter()
                .find(|r| r.level == lv && r.metric == m)
                .unwrap()
                .clone()
        };
        let r = find("c=1", "output_tok_s");
        assert_eq!(
            (r.a, r.b, r.delta, r.better),
            (Some(100.0), Some(120.0), Some(20.0), Some(true))
        );
        assert!((r.delta_percent.unwrap() - 20.0).abs() < 1e-9);
        let r = find("c=1", "ttft_ms p50");
        assert_eq!(
            (r.delta, r.better),
            (Some(-50.0), Some(true)),
            "lower latency is better"
        );
        assert!((r.delta_percent.unwrap() + 25.0).abs() < 1e-9);
        // A level only one run has: shown, no delta.
        let r = find("c=4", "output_tok_s");
        assert_eq!(
            (r.a, r.b, r.delta, r.better),
            (Some(200.0), None, None, None)
        );
        let r = find("c=8", "output_tok_s");
        assert_eq!((r.a, r.b), (None, Some(300.0)));
        let r = find("c=1", "tpot_ms p50");
        assert_eq!(
            (r.delta, r.better),
            (Some(0.0), None),
            "equal: neither better"
        );
    }
}
