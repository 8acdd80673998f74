//! Metric math: pure functions from recorded requests to the figures of a result. No I/O, no clocks.
//!
//! Conventions (the same as vLLM's `bench serve`, stated because tools differ):
//! - **TTFT** (time to first token): request sent → first chunk that carries generated text, `content`
//!   *or* reasoning (`reasoning` / `reasoning_content`). A role-only first chunk does not count.
//! - **E2E latency**: request sent → end of the response stream (after the usage chunk and `[DONE]`).
//! - **TPOT** (time per output token): `(E2E − TTFT) / (N − 1)`, N = the server's `usage.completion_tokens`
//!   (token counts are never guessed from text). Undefined for N < 2.
//! - **ITL** (inter-token latency): the gaps between consecutive chunks that carry text. A chunk that
//!   carries several tokens is one gap (what the client saw), so ITL ≥ TPOT when servers batch tokens.
//! - **Prompt tok/s** of a request: `usage.prompt_tokens / TTFT` (prefill speed, cache hits included).
//! - **Generation tok/s** of a request: `(N − 1) / (E2E − TTFT)` = 1000 / TPOT (decode speed).
//! - **Output tok/s** of a level: all completion tokens of the level / the level's wall time (first request
//!   sent → last response ended). **Requests/s**: completed requests / the same wall time.
//! - **Parallel efficiency** at N: output tok/s at N / (N × output tok/s at concurrency 1). 1.0 = perfect
//!   scaling; the seed's "< 1.5×" at 2 Macs is 0.75.
//! - Distributions: mean and the 50th / 90th / 99th percentiles, linear interpolation between the closest
//!   ranks (numpy's default), over the successful requests of the level.

pub use mlxbox_api::bench::{percentile, Goodput, Stats};

/// What the client recorded of one streamed chat request. Times are ms since the request was sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// When the request was sent, ms since the level started.
    pub sent_at_ms: f64,
    /// Arrival of the first chunk of any kind (a role-only one included): the request's trip there and
    /// the first byte's trip back, before any generated text.
    pub first_chunk_ms: Option<f64>,
    /// Arrival of every chunk that carried text (content or reasoning), in order.
    pub text_chunks_ms: Vec<f64>,
    /// End of the stream.
    pub e2e_ms: f64,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    /// Set when the request failed (HTTP error, broken stream, no usage); the record then counts only as
    /// an error.
    pub error: Option<String>,
    /// The prompt length asked (synthetic prompts), to check the server's count against.
    pub asked_prompt_tokens: Option<u64>,
    /// The output length asked (`--output-tokens`).
    pub asked_output_tokens: Option<u64>,
}

/// The figures of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMetrics {
    pub ttft_ms: f64,
    pub tpot_ms: Option<f64>,
    pub itl_ms: Vec<f64>,
    pub e2e_ms: f64,
    pub prompt_tok_s: Option<f64>,
    pub gen_tok_s: Option<f64>,
}

impl Record {
    pub fn ttft_ms(&self) -> Option<f64> {
        self.text_chunks_ms.first().copied()
    }

    /// `None` for a failed request or one that produced no text.
    pub fn metrics(&self) -> Option<RequestMetrics> {
        if self.error.is_some() {
            return None;
        }
        let ttft = self.ttft_ms()?;
        let n = self.completion_tokens.unwrap_or(0);
        let decode = self.e2e_ms - ttft;
        let tpot = (n >= 2).then(|| decode / (n - 1) as f64);
        Some(RequestMetrics {
            ttft_ms: ttft,
            tpot_ms: tpot,
            itl_ms: self
                .text_chunks_ms
                .windows(2)
                .map(|w| w[1] - w[0])
                .collect(),
            e2e_ms: self.e2e_ms,
            prompt_tok_s: self
                .prompt_tokens
                .filter(|_| ttft > 0.0)
                .map(|p| p as f64 * 1000.0 / ttft),
            gen_tok_s: tpot.filter(|t| *t > 0.0).map(|t| 1000.0 / t),
        })
    }
}

/// The figures of a level (one concurrency, or one Poisson rate), from its records.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelFigures {
    pub ok: u32,
    pub errors: u32,
    pub first_error: Option<String>,
    pub wall_s: f64,
    pub ttft_ms: Option<Stats>,
    pub tpot_ms: Option<Stats>,
    pub itl_ms: Option<Stats>,
    pub e2e_ms: Option<Stats>,
    pub gen_tok_s: Option<Stats>,
    pub prompt_tok_s: Option<f64>,
    pub output_tok_s: f64,
    pub request_s: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: Option<u64>,
}

pub fn level_figures(records: &[Record]) -> LevelFigures {
    let ok: Vec<(&Record, RequestMetrics)> = records
        .iter()
        .filter_map(|r| r.metrics().map(|m| (r, m)))
        .collect();
    let errors: Vec<&Record> = records.iter().filter(|r| r.metrics().is_none()).collect();
    // Wall time: first request sent → last stream ended, over every request (errors took time too).
    let start = records
        .iter()
        .map(|r| r.sent_at_ms)
        .fold(f64::INFINITY, f64::min);
    let end = records
        .iter()
        .map(|r| r.sent_at_ms + r.e2e_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    let wall_s = if records.is_empty() {
        0.0
    } else {
        ((end - start) / 1000.0).max(0.0)
    };
    let col = |f: &dyn Fn(&RequestMetrics) -> Option<f64>| {
        Stats::of(&ok.iter().filter_map(|(_, m)| f(m)).collect::<Vec<_>>())
    };
    let itl: Vec<f64> = ok.iter().flat_map(|(_, m)| m.itl_ms.clone()).collect();
    let prompt_rates: Vec<f64> = ok.iter().filter_map(|(_, m)| m.prompt_tok_s).collect();
    let completion_tokens: u64 = ok.iter().filter_map(|(r, _)| r.completion_tokens).sum();
    let cached: Vec<u64> = ok.iter().filter_map(|(r, _)| r.cached_tokens).collect();
    let per_s = |x: f64| if wall_s > 0.0 { x / wall_s } else { 0.0 };
    LevelFigures {
        ok: ok.len() as u32,
        errors: errors.len() as u32,
        first_error: errors.iter().find_map(|r| r.error.clone()).or_else(|| {
            errors
                .first()
                .map(|_| "the stream carried no text".to_string())
        }),
        wall_s,
        ttft_ms: col(&|m| Some(m.ttft_ms)),
        tpot_ms: col(&|m| m.tpot_ms),
        itl_ms: Stats::of(&itl),
        e2e_ms: col(&|m| Some(m.e2e_ms)),
        gen_tok_s: col(&|m| m.gen_tok_s),
        prompt_tok_s: (!prompt_rates.is_empty())
            .then(|| prompt_rates.iter().sum::<f64>() / prompt_rates.len() as f64),
        output_tok_s: per_s(completion_tokens as f64),
        request_s: per_s(ok.len() as f64),
        prompt_tokens: ok.iter().filter_map(|(r, _)| r.prompt_tokens).sum(),
        completion_tokens,
        cached_tokens: (!cached.is_empty()).then(|| cached.iter().sum()),
    }
}

/// The lengths a level really sent and got, against what was asked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LengthFigures {
    pub prompt_len: Option<Stats>,
    pub output_len: Option<Stats>,
    /// Requests whose prompt the server counted differently from the length asked.
    pub prompt_mismatches: u32,
    /// Requests that ended before the output length asked.
    pub ended_early: u32,
}

pub fn length_figures(records: &[Record]) -> LengthFigures {
    let ok: Vec<&Record> = records.iter().filter(|r| r.metrics().is_some()).collect();
    let lens = |f: &dyn Fn(&Record) -> Option<u64>| {
        Stats::of(
            &ok.iter()
                .filter_map(|r| f(r))
                .map(|n| n as f64)
                .collect::<Vec<_>>(),
        )
    };
    LengthFigures {
        prompt_len: lens(&|r| r.prompt_tokens),
        output_len: lens(&|r| r.completion_tokens),
        prompt_mismatches: ok
            .iter()
            .filter(|r| matches!((r.asked_prompt_tokens, r.prompt_tokens), (Some(a), Some(p)) if a != p))
            .count() as u32,
        ended_early: ok
            .iter()
            .filter(|r| match (r.asked_output_tokens, r.completion_tokens) {
                (Some(a), Some(c)) => c < a,
                (Some(_), None) => true,
                _ => false,
            })
            .count() as u32,
    }
}

/// Goodput (vLLM's `request_goodput`): the requests whose TTFT and TPOT met the SLO, as a share of every
/// request sent (errors are not good) and per second of the level's wall time. A request with one output
/// token has no TPOT and is judged on TTFT alone. `None` without an SLO.
pub fn goodput(
    records: &[Record],
    slo_ttft_ms: Option<f64>,
    slo_tpot_ms: Option<f64>,
    wall_s: f64,
) -> Option<Goodput> {
    if slo_ttft_ms.is_none() && slo_tpot_ms.is_none() || records.is_empty() {
        return None;
    }
    let good = records
        .iter()
        .filter_map(|r| r.metrics())
        .filter(|m| slo_ttft_ms.is_none_or(|s| m.ttft_ms <= s))
        .filter(|m| slo_tpot_ms.is_none_or(|s| m.tpot_ms.is_none_or(|t| t <= s)))
        .count();
    Some(Goodput {
        share: good as f64 / records.len() as f64,
        request_s: if wall_s > 0.0 {
            good as f64 / wall_s
        } else {
            0.0
        },
    })
}

/// Output tok/s at concurrency `n` / (`n` × output tok/s at concurrency 1).
pub fn parallel_efficiency(tok_s_at_n: f64, n: u32, tok_s_at_1: f64) -> Option<f64> {
    (n > 0 && tok_s_at_1 > 0.0).then(|| tok_s_at_n / (n as f64 * tok_s_at_1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_against_what_was_asked_and_goodput() {
        let req = |ttft: f64, n: u64, asked_p: u64, p: u64| Record {
            text_chunks_ms: vec![ttft, ttft + 10.0],
            e2e_ms: ttft + 10.0 * (n - 1) as f64,
            prompt_tokens: Some(p),
            completion_tokens: Some(n),
            asked_prompt_tokens: Some(asked_p),
            asked_output_tokens: Some(8),
            ..Default::default()
        };
        let failed = Record {
            error: Some("HTTP 500".into()),
            ..Default::default()
        };
        // TPOT 10 ms each; TTFT 50, 80, 200; one ended at 5 tokens; one prompt counted 65 for 64.
        let rs = vec![
            req(50.0, 8, 64, 64),
            req(80.0, 5, 64, 65),
            req(200.0, 8, 64, 64),
            failed,
        ];
        let l = length_figures(&rs);
        assert_eq!((l.prompt_mismatches, l.ended_early), (1, 1));
        assert_eq!(l.output_len.unwrap().mean, 7.0);
        let g = goodput(&rs, Some(100.0), Some(12.0), 2.0).unwrap();
        assert_eq!(g.share, 0.5, "2 good of 4 sent (the error is not good)");
        assert_eq!(g.request_s, 1.0);
        assert_eq!(
            goodput(&rs, Some(100.0), Some(5.0), 2.0).unwrap().share,
            0.0
        );
        assert!(goodput(&rs, None, None, 2.0).is_none());
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        // numpy.percentile(range(1, 11), [50, 90, 99]) = 5.5, 9.1, 9.91
        assert!(close(percentile(&v, 50.0), 5.5));
        assert!(close(percentile(&v, 90.0), 9.1));
        assert!(close(percentile(&v, 99.0), 9.91));
        assert!(close(percentile(&v, 0.0), 1.0));
        assert!(close(percentile(&v, 100.0), 10.0));
        assert!(close(percentile(&[7.0], 99.0), 7.0));
        assert!(percentile(&[], 50.0).is_nan());
        let s = Stats::of(&[3.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!((s.mean, s.p50, s.n), (2.0, 2.0, 3));
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn request_metrics_follow_the_definitions() {
        // First text at 100 ms, then 3 chunks 20 ms apart (the last carries 3 tokens), stream ends at 190.
        let r = Record {
            sent_at_ms: 0.0,
            first_chunk_ms: Some(1.0),
            text_chunks_ms: vec![100.0, 120.0, 140.0, 160.0],
            e2e_ms: 190.0,
            prompt_tokens: Some(50),
            completion_tokens: Some(7),
            cached_tokens: Some(0),
            error: None,
            ..Default::default()
        };
        let m = r.metrics().unwrap();
        assert_eq!(m.ttft_ms, 100.0);
        assert!(close(m.tpot_ms.unwrap(), 15.0)); // (190 − 100) / (7 − 1)
        assert_eq!(m.itl_ms, [20.0, 20.0, 20.0]);
        assert!(close(m.prompt_tok_s.unwrap(), 500.0)); // 50 tokens / 0.1 s
        assert!(close(m.gen_tok_s.unwrap(), 1000.0 / 15.0));
        // One token: no TPOT, no generation rate.
        let one = Record {
            completion_tokens: Some(1),
            text_chunks_ms: vec![80.0],
            e2e_ms: 81.0,
            ..r.clone()
        };
        assert_eq!(one.metrics().unwrap().tpot_ms, None);
        // Failed, or no text at all: not a measurement.
        let failed = Record {
            error: Some("HTTP 500".into()),
            ..r.clone()
        };
        assert!(failed.metrics().is_none());
        let empty = Record {
            text_chunks_ms: vec![],
            ..r
        };
        assert!(empty.metrics().is_none());
    }

    #[test]
    fn level_throughput_uses_wall_time_and_counts_errors() {
        let req = |sent: f64, e2e: f64, n: u64| Record {
            sent_at_ms: sent,
            first_chunk_ms: None,
            text_chunks_ms: vec![10.0, 20.0],
            e2e_ms: e2e,
            prompt_tokens: Some(10),
            completion_tokens: Some(n),
            cached_tokens: None,
            error: None,
            ..Default::default()
        };
        let recs = vec![
            req(0.0, 1000.0, 100),
            req(0.0, 2000.0, 100),
            Record {
                error: Some("boom".into()),
                ..req(500.0, 100.0, 0)
            },
        ];
        let f = level_figures(&recs);
        assert_eq!((f.ok, f.errors), (2, 1));
        assert_eq!(f.first_error.as_deref(), Some("boom"));
        assert!(close(f.wall_s, 2.0));
        assert!(close(f.output_tok_s, 100.0)); // 200 tokens / 2 s
        assert!(close(f.request_s, 1.0));
        assert_eq!(f.completion_tokens, 200);
        assert_eq!(f.cached_tokens, None);
        assert_eq!(f.e2e_ms.unwrap().p50, 1500.0);
    }

    #[test]
    fn efficiency() {
        assert_eq!(parallel_efficiency(200.0, 4, 100.0), Some(0.5));
        assert_eq!(parallel_efficiency(100.0, 1, 100.0), Some(1.0));
        assert_eq!(parallel_efficiency(100.0, 4, 0.0), None);
    }
}
