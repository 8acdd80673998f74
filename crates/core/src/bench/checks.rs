//! Functional checks of a chat service: the thinking toggle (the seed's test-thinking-toggle.sh) and a
//! long-context request.

use super::client::{chat_body, excerpt, stream_chat};
use mlxbox_api::bench::report::{CheckStatus, LongContextResult, ThinkingCheck};

pub const THINKING_PROMPT: &str =
    "What is 17 multiplied by 23? Think it through step by step, then give the answer.";

/// Sends a reasoning prompt and judges the answer: with `disable_thinking_tags` there must be no
/// `<think>` / `</think>` in the content and no reasoning field; without it, reasoning is expected (in the
/// reasoning field, or as tags in the content).
pub async fn thinking(
    http: &reqwest::Client,
    base: &str,
    disable_thinking_tags: bool,
    max_tokens: u32,
) -> ThinkingCheck {
    let prompt = format!("{} {THINKING_PROMPT}", super::load::random_prefix());
    let out = stream_chat(http, base, &chat_body(&prompt, max_tokens)).await;
    judge_thinking(
        !disable_thinking_tags,
        &out.content,
        &out.reasoning,
        out.record.error.as_deref(),
    )
}

pub fn judge_thinking(
    expect_thinking: bool,
    content: &str,
    reasoning: &str,
    error: Option<&str>,
) -> ThinkingCheck {
    let tags = content.contains("<think>") || content.contains("</think>");
    let field = !reasoning.trim().is_empty();
    let (status, reason) = match (error, expect_thinking, tags || field) {
        (Some(e), _, _) => (CheckStatus::Fail, format!("the request failed: {e}")),
        (None, true, true) => (
            CheckStatus::Pass,
            if field {
                format!(
                    "reasoning came back in the reasoning field ({} chars), as expected with thinking on",
                    reasoning.chars().count()
                )
            } else {
                "the content has <think>…</think>, as expected with thinking on".to_string()
            },
        ),
        (None, true, false) => (
            CheckStatus::Fail,
            "no reasoning field and no <think> in the content: the model answered without thinking \
             (is enable_thinking off in its chat template, or is it not a thinking model?)"
                .to_string(),
        ),
        (None, false, false) => (
            CheckStatus::Pass,
            "no <think> tags in the content and no reasoning field: disable_thinking_tags works"
                .to_string(),
        ),
        (None, false, true) => (
            CheckStatus::Fail,
            format!(
                "thinking is disabled but the answer has {}: the model ignores enable_thinking=false \
                 (some thinking-only models do); set filter_reasoning = true so the proxy strips it",
                match (tags, field) {
                    (true, true) => "<think> tags and a reasoning field",
                    (true, false) => "<think> tags in the content",
                    _ => "a reasoning field",
                }
            ),
        ),
    };
    ThinkingCheck {
        expect_thinking,
        status,
        reason,
        content_excerpt: excerpt(content, 240),
        reasoning_excerpt: excerpt(reasoning, 240),
    }
}

const FILLER: &str =
    "The quick brown fox jumps over the lazy dog near the quiet river bank at dawn. ";

/// A request of about `target` prompt tokens. Skipped, with the reason, when the service's context
/// (`context`, when known) is smaller. The server's tokenizer is calibrated first with two short
/// requests (prompt tokens of 1 and of 21 fillers), so the size is right for any tokenizer.
pub async fn long_context(
    http: &reqwest::Client,
    base: &str,
    target: u32,
    context: Option<u64>,
) -> LongContextResult {
    let mut r = LongContextResult {
        target_tokens: target,
        status: CheckStatus::Skip,
        reason: String::new(),
        prompt_tokens: None,
        completion_tokens: None,
        ttft_ms: None,
        prompt_tok_s: None,
        e2e_ms: None,
    };
    if let Some(c) = context.filter(|c| *c < u64::from(target)) {
        r.reason = format!(
            "skipped: the service's context is {c} tokens (context_length, else the model's \
             max_position_embeddings), smaller than {target}; use a smaller --long-context-tokens"
        );
        return r;
    }
    let doc = |reps: usize| {
        format!(
            "{} Here is a document:\n{}\nSummarise the document in one sentence.",
            super::load::random_prefix(),
            FILLER.repeat(reps)
        )
    };
    let tokens = |reps: usize| {
        let body = chat_body(&doc(reps), 1);
        async move {
            let o = stream_chat(http, base, &body).await;
            match (o.record.error, o.record.prompt_tokens) {
                (None, Some(p)) => Ok(p),
                (e, _) => Err(e.unwrap_or_else(|| "no prompt_tokens in usage".into())),
            }
        }
    };
    let (p1, p21) = match (tokens(1).await, tokens(21).await) {
        (Ok(a), Ok(b)) if b > a => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            r.status = CheckStatus::Fail;
            r.reason = format!("calibration request failed: {e}");
            return r;
        }
        (Ok(a), Ok(b)) => {
            r.status = CheckStatus::Fail;
            r.reason = format!("cannot calibrate the tokenizer: {a} then {b} prompt tokens");
            return r;
        }
    };
    let per = (p21 - p1) as f64 / 20.0;
    let reps = ((f64::from(target) - p1 as f64) / per).ceil().max(1.0) as usize + 1;
    let out = stream_chat(http, base, &chat_body(&doc(reps), 16)).await;
    let m = out.record.metrics();
    r.prompt_tokens = out.record.prompt_tokens;
    r.completion_tokens = out.record.completion_tokens;
    r.e2e_ms = Some(out.record.e2e_ms);
    r.ttft_ms = m.as_ref().map(|m| m.ttft_ms);
    r.prompt_tok_s = m.as_ref().and_then(|m| m.prompt_tok_s);
    match (&out.record.error, &m) {
        (Some(e), _) => {
            r.status = CheckStatus::Fail;
            r.reason = format!("the long request failed: {e}");
        }
        (None, None) => {
            r.status = CheckStatus::Fail;
            r.reason = "the long request produced no text".into();
        }
        (None, Some(m)) => {
            r.status = CheckStatus::Pass;
            r.reason = format!(
                "{} prompt tokens answered: TTFT {:.0} ms ({:.0} prompt tok/s)",
                r.prompt_tokens.unwrap_or(0),
                m.ttft_ms,
                m.prompt_tok_s.unwrap_or(0.0)
            );
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_verdicts() {
        let j = judge_thinking;
        assert_eq!(j(true, "4", "2+2 is 4", None).status, CheckStatus::Pass);
        assert_eq!(
            j(true, "<think>hm</think>4", "", None).status,
            CheckStatus::Pass
        );
        assert_eq!(j(true, "4", "", None).status, CheckStatus::Fail);
        assert_eq!(j(false, "4", "", None).status, CheckStatus::Pass);
        let bad = j(false, "<think>hm</think>4", "", None);
        assert_eq!(bad.status, CheckStatus::Fail);
        assert!(
            bad.reason.contains("<think> tags in the content"),
            "{}",
            bad.reason
        );
        assert_eq!(j(false, "4", "hm", None).status, CheckStatus::Fail);
        assert_eq!(j(false, "", "", Some("HTTP 500")).status, CheckStatus::Fail);
    }
}
