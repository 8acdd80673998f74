//! Aliases as glob patterns (`aliases = ["claude-*"]`): an agent names models by its own families
//! (`claude-sonnet-4-5`, `gpt-5-codex`), and a pattern routes a whole family to a chosen service or pool.
//!
//! - Syntax: `*` matches any run of characters, the empty one included; every other character is
//!   itself. A pattern has no whitespace, no `**`, and none of `? [ ] { } \` (other globs' syntax, refused
//!   so that it is never silently taken literally). A lone `*` catches every model no other name takes.
//! - Which one wins, most specific first: a name given exactly (a service's or pool's name, a plain
//!   alias, a model id) over any pattern; then the pattern with more literal (non-`*`) characters; then
//!   the longer literal prefix (before the first `*`); then the one declared first (file order:
//!   services, then pools).

use std::cmp::Reverse;

/// Is this alias a pattern?
pub fn is_pattern(alias: &str) -> bool {
    alias.contains('*')
}

/// Why an alias cannot be used, if it cannot.
pub fn check(alias: &str) -> Result<(), String> {
    if alias.is_empty() {
        return Err("an alias cannot be empty".into());
    }
    if let Some(c) = alias.chars().find(|c| c.is_whitespace()) {
        return Err(format!("alias `{alias}` holds whitespace ({c:?})"));
    }
    if alias.contains("**") {
        return Err(format!(
            "alias `{alias}` holds `**`: one `*` already matches any run of characters"
        ));
    }
    if let Some(c) = alias.chars().find(|c| "?[]{}\\".contains(*c)) {
        return Err(format!(
            "alias `{alias}` holds `{c}`: an alias pattern knows only `*` (any run of characters)"
        ));
    }
    Ok(())
}

/// Does `pattern` (with `*`) match `name`, the whole of it?
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // The classic two-pointer glob match: linear but for backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&b| b == b'*')
}

/// How specific a pattern is: greater is more specific (literal characters, then the literal prefix).
pub fn specificity(pattern: &str) -> (usize, usize) {
    let literal = pattern.chars().filter(|&c| c != '*').count();
    let prefix = pattern.find('*').unwrap_or(pattern.len());
    (literal, prefix)
}

/// Patterns with what they route to, the most specific first (ties: in the order given).
pub struct Patterns<T> {
    list: Vec<(String, T)>,
}

impl<T: Clone> Patterns<T> {
    /// From (pattern, target) in declaration order; aliases that are not patterns are left out.
    pub fn new(all: impl IntoIterator<Item = (String, T)>) -> Self {
        let mut list: Vec<(String, T)> = all.into_iter().filter(|(p, _)| is_pattern(p)).collect();
        // A stable sort keeps declaration order among equals.
        list.sort_by_key(|(p, _)| Reverse(specificity(p)));
        Patterns { list }
    }

    /// The target of the most specific pattern that matches `name`.
    pub fn find(&self, name: &str) -> Option<&T> {
        self.list
            .iter()
            .find(|(p, _)| matches(p, name))
            .map(|(_, t)| t)
    }

    /// Every pattern with its target, the most specific first.
    pub fn iter(&self) -> impl Iterator<Item = &(String, T)> {
        self.list.iter()
    }
}

/// Does a name match one of `aliases` (exactly, or by a pattern)?
pub fn any_matches(aliases: &[String], name: &str) -> bool {
    aliases
        .iter()
        .any(|a| a == name || (is_pattern(a) && matches(a, name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_any_run() {
        for (p, n, want) in [
            ("claude-*", "claude-sonnet-4-5", true),
            ("claude-*", "claude-", true),
            ("claude-*", "claude", false),
            ("claude-*", "xclaude-a", false),
            ("*-codex", "gpt-5-codex", true),
            ("*-codex", "gpt-5-codex-mini", false),
            ("gpt-*-mini", "gpt-5-mini", true),
            ("gpt-*-mini", "gpt--mini", true),
            ("gpt-*-mini", "gpt-mini", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXcYb", false),
            ("*", "", true),
            ("*", "anything", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(matches(p, n), want, "{p} ~ {n}");
        }
    }

    #[test]
    fn most_specific_first_then_declaration_order() {
        let p = Patterns::new([
            ("*".to_string(), "catch-all"),
            ("claude-*".to_string(), "claude"),
            ("claude-*-haiku-*".to_string(), "haiku"),
            ("plain".to_string(), "not a pattern"),
            ("claude-opus-*".to_string(), "opus"),
            ("*-sonnet-4".to_string(), "sonnet"),
            ("claude-*-5".to_string(), "five"),
        ]);
        assert_eq!(p.find("claude-3-haiku-20240307"), Some(&"haiku"));
        assert_eq!(p.find("claude-opus-4"), Some(&"opus"));
        assert_eq!(
            p.find("claude-sonnet-4"),
            Some(&"sonnet"),
            "more literal characters"
        );
        assert_eq!(p.find("claude-opus-5"), Some(&"opus"), "11 literals over 9");
        // As many literals: the longer literal prefix.
        let q = Patterns::new([
            ("*-sonnet-4".to_string(), "suffix"),
            ("claude-*-4".to_string(), "prefix"),
        ]);
        assert_eq!(q.find("claude-sonnet-4"), Some(&"prefix"));
        assert_eq!(p.find("claude-x"), Some(&"claude"));
        assert_eq!(p.find("gpt-5"), Some(&"catch-all"));
        assert_eq!(
            p.find("plain"),
            Some(&"catch-all"),
            "plain aliases are not patterns"
        );
        let tie = Patterns::new([("a*".to_string(), 1), ("a*".to_string(), 2)]);
        assert_eq!(tie.find("ab"), Some(&1), "the first declared");
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "",
            "claude **",
            "claude-**",
            "claude-?",
            "gpt-[45]",
            "{a,b}",
            "a\\*",
            " x",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        for good in ["claude-*", "*", "org/model-*-4bit", "gpt-5.1-codex"] {
            assert!(check(good).is_ok(), "{good}");
        }
        assert!(any_matches(&["fast".into(), "claude-*".into()], "claude-x"));
        assert!(any_matches(&["fast".into()], "fast"));
        assert!(!any_matches(&["fast".into()], "fas*"));
    }
}
