//! Glob patterns as Datadog's sampling rules use them.
//!
//! `*` matches any run of characters (the empty one included), `?` exactly one character; every
//! other character matches itself. There are no escapes, the whole subject must match, and the
//! comparison ignores case, as in Datadog's tracers (`glob_matching.py`, go's `(?i)^…$`,
//! libdatadog's `glob_matcher.rs`).

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern as written, for messages and debugging.
    source: String,
    /// The lowercased pattern, one entry per character.
    chars: Vec<char>,
    /// The pattern is only `*`s: it matches everything, without looking.
    any: bool,
}

impl Glob {
    /// Compiles a pattern. Every string is a valid pattern.
    pub fn new(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.to_lowercase().chars().collect();
        let any = !chars.is_empty() && chars.iter().all(|c| *c == '*');
        Self {
            source: pattern.to_string(),
            chars,
            any,
        }
    }

    /// Whether `subject` matches the whole pattern, ignoring case.
    ///
    /// The classic two-pointer match with a single backtracking point: linear in practice, at
    /// most `pattern × subject` steps for pathological patterns such as `*a*a*a*b`.
    pub fn matches(&self, subject: &str) -> bool {
        if self.any {
            return true;
        }
        let subject: Vec<char> = subject.to_lowercase().chars().collect();
        let pattern = &self.chars;
        let (mut p, mut s) = (0, 0);
        // Where the last `*` was, and the subject position it currently stands for.
        let mut star: Option<(usize, usize)> = None;
        while s < subject.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, s));
                    p += 1;
                }
                Some(c) if *c == '?' || *c == subject[s] => {
                    p += 1;
                    s += 1;
                }
                _ => match star {
                    // Let the last `*` swallow one more character, and retry after it.
                    Some((star_p, star_s)) => {
                        p = star_p + 1;
                        s = star_s + 1;
                        star = Some((star_p, star_s + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|c| *c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, subject: &str) -> bool {
        Glob::new(pattern).matches(subject)
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("GET /notes*", "GET /notes/{id}"));
        assert!(m("GET /notes*", "GET /notes"));
        assert!(m("?et /notes", "GET /notes"));
        assert!(!m("?", ""));
        assert!(!m("?", "ab"));
        assert!(m("a*b*c", "a-bb-c"));
        assert!(!m("a*b*c", "a-bb-d"));
        assert!(m("*.request", "actix_web.request"));
        assert!(!m("notes", "notes_helper"));
        assert!(m("", ""));
        assert!(!m("", "x"));
    }

    #[test]
    fn case_is_ignored_on_both_sides() {
        assert!(m("get /NOTES", "GET /notes"));
        assert!(m("Notes", "NOTES"));
        assert!(m("ÉTÉ*", "été 2026"));
    }

    #[test]
    fn no_escapes_brackets_are_literal() {
        assert!(m("[a]", "[A]"));
        assert!(!m("[a]", "a"));
        assert!(m("\\*", "\\anything"));
    }

    #[test]
    fn pathological_patterns_finish() {
        let subject = "a".repeat(2000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!m(&pattern, &subject));
    }
}
