//! Stop strings over streamed text.
//!
//! Text arrives a token at a time, and a stop string may be split across tokens. The matcher
//! holds back any tail of the text that could still grow into a stop string, so no part of a
//! stop string is ever shown. On a match it emits only the text before the stop string, which
//! itself is dropped, as the OpenAI API and llama.cpp do.
//!
//! The result does not depend on how the text is cut into pushes: the match taken is the one
//! that ends first in the text (the one a character-by-character stream would meet first),
//! and among those ending at the same place, the one that starts first.

/// What [`StopMatcher::push`] lets through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopOutput {
    /// Text safe to show now.
    pub emit: String,
    /// A stop string was found; nothing more will be emitted.
    pub stopped: bool,
}

/// Finds stop strings in text pushed piece by piece.
#[derive(Clone, Debug)]
pub struct StopMatcher {
    /// Non-empty stop strings (an empty one would match before any text).
    stops: Vec<String>,
    /// Text received but not emitted: a tail that is a proper prefix of some stop string.
    held: String,
    /// Index in `stops` of the stop string found, once found.
    matched: Option<usize>,
}

impl StopMatcher {
    /// A matcher for `stops`; empty strings among them are ignored.
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            matched: None,
        }
    }

    /// Takes the next piece of text and returns what can be shown now. After a stop, every
    /// push returns no text and `stopped: true`.
    pub fn push(&mut self, text: &str) -> StopOutput {
        if self.matched.is_some() {
            return StopOutput {
                emit: String::new(),
                stopped: true,
            };
        }
        self.held.push_str(text);
        if let Some((index, start)) = self.first_match() {
            self.matched = Some(index);
            self.held.truncate(start);
            return StopOutput {
                emit: std::mem::take(&mut self.held),
                stopped: true,
            };
        }
        let keep_from = self.partial_match_start();
        let emit = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        StopOutput {
            emit,
            stopped: false,
        }
    }

    /// Ends the stream: returns the text held back (empty after a stop, since the held text
    /// was part of the stop string or came after it).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// The stop string that was found, if any.
    pub fn matched(&self) -> Option<&str> {
        self.matched.map(|i| self.stops[i].as_str())
    }

    /// (index in `stops`, byte start in `held`) of the match that ends first, then starts
    /// first. For one stop string the first occurrence also ends first.
    fn first_match(&self) -> Option<(usize, usize)> {
        self.stops
            .iter()
            .enumerate()
            .filter_map(|(i, stop)| self.held.find(stop.as_str()).map(|start| (i, start)))
            .min_by_key(|&(i, start)| (start + self.stops[i].len(), start))
    }

    /// Byte offset in `held` where the longest tail that is a proper prefix of a stop string
    /// begins; `held.len()` if there is none. Only char boundaries are tried, so the split
    /// never cuts a character.
    fn partial_match_start(&self) -> usize {
        let held = self.held.as_bytes();
        let longest_stop = self.stops.iter().map(String::len).max().unwrap_or(0);
        // A proper prefix is at least one byte shorter than its stop string.
        let earliest = held.len().saturating_sub(longest_stop.saturating_sub(1));
        (earliest..held.len())
            .filter(|&start| self.held.is_char_boundary(start))
            .find(|&start| {
                let tail = &held[start..];
                self.stops
                    .iter()
                    .any(|stop| stop.len() > tail.len() && stop.as_bytes().starts_with(tail))
            })
            .unwrap_or(held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Rng;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(stops.iter().map(|s| s.to_string()).collect())
    }

    /// Pushes `pieces` and returns (each push's output, what `finish` returns).
    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<StopOutput>, String) {
        let mut m = matcher(stops);
        let outs = pieces.iter().map(|p| m.push(p)).collect();
        (outs, m.finish())
    }

    fn out(emit: &str, stopped: bool) -> StopOutput {
        StopOutput {
            emit: emit.to_string(),
            stopped,
        }
    }

    /// What a character-at-a-time stream shows: the text up to the first place where some
    /// stop string ends, minus the longest stop string ending there.
    fn reference(stops: &[&str], text: &str) -> (String, bool) {
        let ends = text
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .chain(std::iter::once(0));
        let first_end = ends
            .filter(|&end| {
                stops
                    .iter()
                    .any(|s| !s.is_empty() && text[..end].ends_with(s))
            })
            .min();
        match first_end {
            Some(end) => {
                let longest = stops
                    .iter()
                    .filter(|s| !s.is_empty() && text[..end].ends_with(*s))
                    .map(|s| s.len())
                    .max()
                    .unwrap_or(0);
                (text[..end - longest].to_string(), true)
            }
            None => (text.to_string(), false),
        }
    }

    #[test]
    fn stop_split_across_pushes_is_never_shown() {
        let (outs, rest) = run(&["</s>"], &["Hello <", "/", "s> more"]);
        assert_eq!(outs, [out("Hello ", false), out("", false), out("", true)]);
        assert_eq!(rest, "");
    }

    #[test]
    fn held_text_is_released_when_it_stops_looking_like_a_stop() {
        let (outs, rest) = run(&["</s>"], &["a <", "/b", " c"]);
        assert_eq!(
            outs,
            [out("a ", false), out("</b", false), out(" c", false)]
        );
        assert_eq!(rest, "");
        let (outs, rest) = run(&["</s>"], &["x </"]);
        assert_eq!(outs, [out("x ", false)]);
        assert_eq!(rest, "</");
    }

    #[test]
    fn overlapping_candidates_take_the_match_that_ends_first() {
        // "ab" is complete as soon as "b" arrives, before "abc" could be.
        let (outs, _) = run(&["abc", "ab"], &["xa", "bc"]);
        assert_eq!(outs, [out("x", false), out("", true)]);
        // Same result whatever the chunking.
        let (outs, _) = run(&["abc", "ab"], &["xabc"]);
        assert_eq!(outs, [out("x", true)]);
        let (outs, _) = run(&["bc", "abcd"], &["xabcd"]);
        assert_eq!(outs, [out("xa", true)]);
        // "abc" held while it may still complete, then released when it cannot.
        let (outs, rest) = run(&["abcd"], &["ab", "c", "e"]);
        assert_eq!(outs, [out("", false), out("", false), out("abce", false)]);
        assert_eq!(rest, "");
    }

    #[test]
    fn several_stops() {
        let mut m = matcher(&["\n\n", "User:"]);
        assert_eq!(m.push("Hi.\n"), out("Hi.", false));
        assert_eq!(m.push("Use"), out("\n", false));
        assert_eq!(m.push("r: no"), out("", true));
        assert_eq!(m.matched(), Some("User:"));
        // Once stopped, nothing more comes out.
        assert_eq!(m.push("more"), out("", true));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn multi_byte_characters() {
        let (outs, _) = run(&["é!", "日本"], &["caf", "é", "!"]);
        assert_eq!(outs, [out("caf", false), out("", false), out("", true)]);
        let (outs, rest) = run(&["é!", "日本"], &["今日", "は"]);
        assert_eq!(outs, [out("今", false), out("日は", false)]);
        assert_eq!(rest, "");
        // A character that shares its first byte with the stop string is not held.
        let (outs, rest) = run(&["\u{e9}x"], &["\u{e8}\u{e9}"]);
        assert_eq!(outs, [out("\u{e8}", false)]);
        assert_eq!(rest, "\u{e9}");
    }

    #[test]
    fn without_a_stop_everything_comes_out() {
        let (outs, rest) = run(&[], &["one ", "two"]);
        assert_eq!(outs, [out("one ", false), out("two", false)]);
        assert_eq!(rest, "");
        let (outs, rest) = run(&["", "STOP"], &["S", "TO"]);
        assert_eq!(outs, [out("", false), out("", false)]);
        assert_eq!(rest, "STO");
        let mut m = matcher(&["STOP"]);
        assert_eq!(m.matched(), None);
        assert_eq!(m.finish(), "");
    }

    /// Random texts cut at random char boundaries: the matcher must agree with the
    /// character-at-a-time reference, and never show text the reference would not.
    #[test]
    fn any_chunking_agrees_with_the_character_stream() {
        let alphabet = ['a', 'b', 'c', 'é', '日', '\n'];
        // "ca" lies inside "acab" and ends before it: a match that starts first but ends
        // later must not win.
        let stops = ["ab", "abc", "bca", "é\n", "日日é", "c\n\n", "acab", "ca"];
        let mut rng = Rng::from_seed(5);
        let mut pick = |n: usize| (rng.next_u64() % n as u64) as usize;
        for case in 0..2000 {
            let len = pick(16);
            let text: String = (0..len).map(|_| alphabet[pick(alphabet.len())]).collect();
            let stop_set: Vec<&str> = stops.iter().copied().filter(|_| pick(2) == 0).collect();
            let (expected, expected_stop) = reference(&stop_set, &text);
            let mut m = matcher(&stop_set);
            let mut shown = String::new();
            let mut stopped = false;
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut cut = (1 + pick(rest.len())).min(rest.len());
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                let o = m.push(&rest[..cut]);
                rest = &rest[cut..];
                shown.push_str(&o.emit);
                stopped |= o.stopped;
                assert!(
                    expected.starts_with(&shown),
                    "case {case}: showed {shown:?}"
                );
            }
            shown.push_str(&m.finish());
            assert_eq!(
                (shown, stopped),
                (expected, expected_stop),
                "case {case}: {text:?}"
            );
        }
    }
}
