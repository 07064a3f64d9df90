//! Glob matching without backtracking blow-up: `*` matches any run, `?` one character.
//!
//! The pattern is split at `*` into segments; the first must match at the start, the last at
//! the end, the ones between at their leftmost place after the previous one. Leftmost placement
//! is always safe with `*` between segments, so there is no backtracking: the cost is at most
//! `O(len(text) x len(pattern))`, never exponential.

/// Whether `text` matches `pattern`.
#[must_use]
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let segments: Vec<&[char]> = pattern.split(|&c| c == '*').collect();
    if segments.len() == 1 {
        return text.len() == pattern.len() && matches_at(&text, 0, segments[0]);
    }
    let (first, last) = (segments[0], segments[segments.len() - 1]);
    if text.len() < first.len() + last.len()
        || !matches_at(&text, 0, first)
        || !matches_at(&text, text.len() - last.len(), last)
    {
        return false;
    }
    let mut at = first.len();
    let end = text.len() - last.len();
    for segment in &segments[1..segments.len() - 1] {
        match find(&text[..end], at, segment) {
            Some(found) => at = found + segment.len(),
            None => return false,
        }
    }
    true
}

fn matches_at(text: &[char], at: usize, segment: &[char]) -> bool {
    text.len() >= at + segment.len()
        && segment.iter().zip(&text[at..]).all(|(p, t)| *p == '?' || p == t)
}

fn find(text: &[char], from: usize, segment: &[char]) -> Option<usize> {
    if text.len() < segment.len() {
        return None;
    }
    (from..=text.len() - segment.len()).find(|&at| matches_at(text, at, segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "anything", true),
            ("release/*", "release/42", true),
            ("release/*", "lock/42", false),
            ("*/42", "release/42", true),
            ("r?lease/*", "release/1", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxcyyb", false),
            ("a*a", "a", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
            ("?", "é", true),
        ] {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn no_blow_up_on_pathological_patterns() {
        let text = "a".repeat(5000);
        let pattern = format!("{}b", "a*".repeat(100));
        assert!(!glob_match(&pattern, &text));
    }
}
