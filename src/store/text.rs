//! The rules every title, author and name follows, and the JSON Schema pattern that states them.
//!
//! A text is refused when it holds a control character other than tab and newline (NUL, escape
//! sequences, carriage returns: they corrupt logs and terminals and are never part of a name), or
//! when it is blank: made only of characters that show nothing, Unicode `White_Space` and
//! `Default_Ignorable_Code_Point` (`"\u{200b}\u{a0}\u{feff}"` looks empty wherever it is shown).
//! The check and the pattern are built from the same tables, and a test compares them on every
//! Unicode character, so the OpenAPI document and the server cannot disagree.

use std::sync::LazyLock;

use super::Violation;

/// Longest title, author or name, in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// Unicode `Cc` but tab and newline: the control characters a text must not hold.
const FORBIDDEN_CONTROLS: &[(char, char)] = &[
    ('\u{0}', '\u{8}'),
    ('\u{b}', '\u{1f}'),
    ('\u{7f}', '\u{9f}'),
];

/// Unicode `White_Space`, the set `char::is_whitespace` uses.
const WHITE_SPACE: &[(char, char)] = &[
    ('\t', '\r'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

/// Unicode `Default_Ignorable_Code_Point`, as listed in `DerivedCoreProperties.txt` of Unicode
/// 15.0: characters that render as nothing (zero-width spaces and joiners, direction marks,
/// variation selectors, fillers, tags, and the code points reserved for more of them).
const DEFAULT_IGNORABLE: &[(char, char)] = &[
    ('\u{ad}', '\u{ad}'),
    ('\u{34f}', '\u{34f}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{115f}', '\u{1160}'),
    ('\u{17b4}', '\u{17b5}'),
    ('\u{180b}', '\u{180f}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{202a}', '\u{202e}'),
    ('\u{2060}', '\u{206f}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{fe00}', '\u{fe0f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{ffa0}', '\u{ffa0}'),
    ('\u{fff0}', '\u{fff8}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0000}', '\u{e0fff}'),
];

/// JSON Schema pattern of a title, author or name: no control character but tab and newline,
/// and at least one character that is neither whitespace nor default-ignorable.
///
/// Characters up to U+FFFF are written `\uXXXX`, which ECMA-262, Python and Rust regexes all
/// read; the default-ignorables above U+FFFF appear as themselves, since ECMA-262 has no escape
/// for them outside its `u` mode. Validators that match code points (Python, Rust, ECMA-262 with
/// `u`, as JSON Schema asks) read the pattern exactly as the store judges texts.
pub static TEXT_PATTERN: LazyLock<String> = LazyLock::new(|| {
    let controls = class(FORBIDDEN_CONTROLS);
    let invisible = class(&[WHITE_SPACE, DEFAULT_IGNORABLE].concat());
    format!("^[^{controls}]*[^{controls}{invisible}][^{controls}]*$")
});

/// The ranges as the inside of a regex character class.
fn class(ranges: &[(char, char)]) -> String {
    let escape = |c: char| match u32::from(c) {
        code @ 0..=0xffff => format!("\\u{code:04x}"),
        _ => c.to_string(),
    };
    ranges
        .iter()
        .map(|&(low, high)| {
            if low == high {
                escape(low)
            } else {
                format!("{}-{}", escape(low), escape(high))
            }
        })
        .collect()
}

fn in_ranges(ranges: &[(char, char)], c: char) -> bool {
    ranges.iter().any(|&(low, high)| (low..=high).contains(&c))
}

/// Whether `c` shows nothing: whitespace or a default-ignorable code point.
fn is_invisible(c: char) -> bool {
    in_ranges(WHITE_SPACE, c) || in_ranges(DEFAULT_IGNORABLE, c)
}

/// Checks a title, author or name: no control character but tab and newline, not blank, at
/// most [`MAX_TEXT_CHARS`] characters.
pub(super) fn check_text(field: &'static str, value: &str) -> Option<Violation> {
    let message = if value.is_ascii() {
        ascii_text_problem(value.as_bytes())
    } else {
        text_problem(value)
    }?;
    Some(Violation { field, message })
}

const HAS_CONTROLS: &str = "must not contain control characters other than tab and newline";
const BLANK: &str = "must not be blank";
const TOO_LONG: &str = "must be at most 200 characters long";

/// What is wrong with `value`, if anything.
fn text_problem(value: &str) -> Option<&'static str> {
    if value.chars().any(|c| in_ranges(FORBIDDEN_CONTROLS, c)) {
        Some(HAS_CONTROLS)
    } else if value.chars().all(is_invisible) {
        Some(BLANK)
    } else if value.chars().count() > MAX_TEXT_CHARS {
        Some(TOO_LONG)
    } else {
        None
    }
}

/// [`text_problem`] for a text that is all ASCII, in one pass over its bytes: a
/// seed of a million books spent a tenth of its load time in the general check.
fn ascii_text_problem(bytes: &[u8]) -> Option<&'static str> {
    // Folds rather than `any`, so that the loop has no early exit and compiles to vector code.
    let has_control = bytes.iter().fold(false, |found, &byte| {
        found | ((byte < b' ' && byte != b'\t' && byte != b'\n') | (byte == 0x7f))
    });
    let has_visible = bytes
        .iter()
        .fold(false, |found, &byte| found | (byte > b' '));
    if has_control {
        Some(HAS_CONTROLS)
    } else if !has_visible {
        Some(BLANK)
    } else if bytes.len() > MAX_TEXT_CHARS {
        Some(TOO_LONG)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex::Regex;

    fn accepted(value: &str) -> bool {
        check_text("title", value).is_none()
    }

    fn pattern() -> Regex {
        Regex::new(&TEXT_PATTERN).unwrap()
    }

    fn all_chars() -> impl Iterator<Item = char> {
        (0..=u32::from(char::MAX)).filter_map(char::from_u32)
    }

    #[test]
    fn the_tables_are_the_unicode_properties_they_name() {
        for c in all_chars() {
            assert_eq!(in_ranges(WHITE_SPACE, c), c.is_whitespace(), "{c:?}");
            assert_eq!(
                in_ranges(FORBIDDEN_CONTROLS, c),
                c.is_control() && c != '\t' && c != '\n',
                "{c:?}"
            );
        }
        // The examples Unicode gives; the full list is checked against the file by hand.
        for c in ['\u{200b}', '\u{feff}', '\u{ad}', '\u{e0001}', '\u{1d173}'] {
            assert!(in_ranges(DEFAULT_IGNORABLE, c), "{c:?}");
        }
        for c in ['a', '\u{200a}', '\u{fff9}', '\u{1bca4}', '\u{e1000}'] {
            assert!(!in_ranges(DEFAULT_IGNORABLE, c), "{c:?}");
        }
    }

    /// Every character up to U+FFFF; above, the ends of every range and their neighbours, and
    /// a sample of the rest (all of them takes a debug build several seconds).
    fn chars_to_compare() -> impl Iterator<Item = char> {
        let edges = [FORBIDDEN_CONTROLS, WHITE_SPACE, DEFAULT_IGNORABLE]
            .concat()
            .into_iter()
            .flat_map(|(low, high)| {
                let (low, high) = (u32::from(low), u32::from(high));
                [low.saturating_sub(1), low, high, high + 1]
            });
        (0..=0xffff)
            .chain(edges)
            .chain((0x1_0000..=u32::from(char::MAX)).step_by(61))
            .chain([u32::from(char::MAX)])
            .filter_map(char::from_u32)
    }

    #[test]
    fn the_pattern_agrees_with_the_check_on_every_kind_of_character() {
        let pattern = pattern();
        let mut text = String::new();
        for c in chars_to_compare() {
            // Alone, beside a visible character, and beside an invisible one.
            for (before, after) in [("", ""), ("x", ""), ("", "\u{200b}")] {
                text.clear();
                text.push_str(before);
                text.push(c);
                text.push_str(after);
                assert_eq!(pattern.is_match(&text), accepted(&text), "{text:?}");
            }
        }
    }

    #[test]
    fn blank_and_control_examples() {
        for blank in [
            "",
            " ",
            "\t\n",
            "\u{200b}\u{a0}\u{feff}",
            "\u{e0020}\u{3164}",
        ] {
            assert_eq!(
                check_text("title", blank).map(|v| v.message),
                Some("must not be blank"),
                "{blank:?}"
            );
        }
        for control in ["a\u{0}b", "\r", " \r ", "\u{1b}[0m", "\u{85}", "x\u{7f}"] {
            assert_eq!(
                check_text("title", control).map(|v| v.message),
                Some("must not contain control characters other than tab and newline"),
                "{control:?}"
            );
        }
        for fine in ["a\tb\nc", "\u{200b}a", " x ", "é".repeat(200).as_str()] {
            assert!(accepted(fine), "{fine:?}");
        }
    }

    proptest! {
        #[test]
        fn the_ascii_check_agrees_with_the_general_one(
            text in prop_oneof!["[\\x00-\\x7f]{0,205}", "[ \t\n\r\x0ba]{0,3}", "[ a]{198,203}"]
        ) {
            prop_assert_eq!(ascii_text_problem(text.as_bytes()), text_problem(&text));
        }

        #[test]
        fn the_pattern_agrees_with_the_check_on_mixed_texts(
            text in "[a \t\n\r\u{0}\u{7f}\u{85}\u{a0}\u{ad}\u{200b}\u{feff}\u{3164}\u{e0020}é🚀]{0,12}"
        ) {
            prop_assert_eq!(pattern().is_match(&text), accepted(&text));
        }
    }
}
