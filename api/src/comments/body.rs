//! The rules for a comment's text, and the body field that carries it.
//!
//! A body is stored in Unicode NFC, so the same text typed on two systems (precomposed `é`,
//! or `e` and a combining accent) is the same comment, and its length is counted there, in
//! what is stored (NFC can lengthen a text: U+FB2C is three code points in NFC). A body of
//! only whitespace and invisible format characters (general category Cf: U+200B, U+202E,
//! U+FEFF, ...) shows as nothing, so it is blank; control characters other than newline and
//! tab (BEL, ESC, NUL, ...) are refused. The character data comes from `unicode-normalization`
//! and `unicode-properties` (kept in step with each Unicode release), never from a table
//! written here: the spec's pattern is generated from the same predicates.

use std::sync::LazyLock;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};

use crate::strict_string::json_string_type;
use crate::text_rules;

/// The longest comment, in characters (Unicode code points) after NFC, as the database
/// enforces.
pub const MAX_CHARS: usize = 2000;

/// Why a body is refused; the message names the field and the rule, for the 400's detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyRefused {
    #[error(
        "`body` must be a string of 1 to 2000 characters that is not blank: it has no character besides whitespace and invisible format characters (such as U+200B or U+202E)"
    )]
    Blank,
    #[error(
        "`body` must not contain control characters other than newline and tab: character {position} is U+{code:04X}"
    )]
    Control {
        /// 1-based, in characters.
        position: usize,
        code: u32,
    },
    #[error(
        "`body` must be a string of 1 to {MAX_CHARS} characters (counted after Unicode NFC normalization): it is {0}"
    )]
    TooLong(usize),
}

/// A control character a body may not hold: every one but newline and tab.
fn is_refused_control(c: char) -> bool {
    text_rules::is_control(c) && c != '\n' && c != '\t'
}

/// A character that shows as nothing: whitespace (White_Space) or a format character (Cf).
fn is_invisible(c: char) -> bool {
    c.is_whitespace() || text_rules::is_format(c)
}

/// The body as stored: `raw` in NFC, once it passes every rule.
pub fn normalize(raw: &str) -> Result<String, BodyRefused> {
    let body = text_rules::to_nfc(raw).into_owned();
    if let Some((index, c)) = body
        .chars()
        .enumerate()
        .find(|(_, c)| is_refused_control(*c))
    {
        return Err(BodyRefused::Control {
            position: index + 1,
            code: c.into(),
        });
    }
    if body.chars().all(is_invisible) {
        return Err(BodyRefused::Blank);
    }
    let chars = body.chars().count();
    if chars > MAX_CHARS {
        return Err(BodyRefused::TooLong(chars));
    }
    Ok(body)
}

/// The character class (without brackets) of every BMP character `pick` selects, as ranges
/// of `\uXXXX` escapes, which ECMA-262 (the spec's regex dialect), Python's `re` (schemathesis
/// draws bodies with it) and the regex crate all read alike. Outside the BMP they share no
/// escape, and schemathesis cannot draw from a pattern holding such characters literally.
fn class_of(pick: impl Fn(char) -> bool) -> String {
    let mut class = String::new();
    let mut chars = (0..=0xFFFF).filter_map(char::from_u32).peekable();
    while let Some(start) = chars.next() {
        if !pick(start) {
            continue;
        }
        let mut end = start;
        while let Some(&next) = chars.peek() {
            if !pick(next) || u32::from(next) != u32::from(end) + 1 {
                break;
            }
            end = next;
            chars.next();
        }
        class.push_str(&format!("\\u{:04X}", u32::from(start)));
        if end != start {
            class.push_str(&format!("-\\u{:04X}", u32::from(end)));
        }
    }
    class
}

/// The spec's pattern for a body: no refused control character anywhere (all are in the
/// BMP), and at least one character that is neither refused nor invisible. NFC changes
/// neither property, so the pattern on the text as sent agrees with the rules on the text as
/// stored, but for one gap: the few format characters outside the BMP (U+E0001, the tags
/// U+E0020 to U+E007F, U+1D173 to U+1D17A, ...) count as visible in the pattern, so the spec
/// takes a body of only those, which the server refuses as blank.
pub static PATTERN: LazyLock<String> = LazyLock::new(|| {
    let refused = class_of(is_refused_control);
    let blank_or_refused = class_of(|c| is_refused_control(c) || is_invisible(c));
    format!("^[^{refused}]*[^{blank_or_refused}][^{refused}]*$")
});

/// A comment's text as sent: any JSON string (a number or boolean is refused, as with
/// [`crate::strict_string::StrictString`]). [`normalize`] applies the rules, so a refusal can
/// say which rule in its own words; the schema declares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentBody(pub String);

json_string_type!(
    CommentBody,
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        min_length: Some(1),
        max_length: Some(MAX_CHARS),
        pattern: Some(PATTERN.clone()),
        ..MetaSchema::new("string")
    }))
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_stored_in_nfc() {
        assert_eq!(normalize("cafe\u{301}").as_deref(), Ok("café"));
        assert_eq!(normalize("line\nand\ttab").as_deref(), Ok("line\nand\ttab"));
    }

    #[test]
    fn whitespace_and_format_characters_alone_are_blank() {
        for blank in [
            "",
            " ",
            "\u{200b}",
            "\u{202e}",
            "\u{feff}\u{2060}",
            " \u{a0}\n\u{200d}",
        ] {
            assert_eq!(normalize(blank), Err(BodyRefused::Blank), "{blank:?}");
        }
        assert!(normalize("\u{202e}abc").is_ok());
    }

    #[test]
    fn control_characters_but_newline_and_tab_are_refused_with_their_position() {
        assert_eq!(
            normalize("ding\u{7}"),
            Err(BodyRefused::Control {
                position: 5,
                code: 7
            })
        );
        for control in ["\u{1b}[31m", "a\u{0}", "\r\n", "\u{7f}", "\u{85}"] {
            assert!(
                matches!(normalize(control), Err(BodyRefused::Control { .. })),
                "{control:?}"
            );
        }
    }

    #[test]
    fn the_length_is_counted_after_normalization() {
        // U+FB2C is three code points in NFC; e + U+0301 is one.
        assert_eq!(
            normalize(&"\u{fb2c}".repeat(700)),
            Err(BodyRefused::TooLong(2100))
        );
        assert!(normalize(&"e\u{301}".repeat(MAX_CHARS)).is_ok());
    }

    #[test]
    fn the_spec_pattern_agrees_with_the_rules_but_for_format_characters_outside_the_bmp() {
        let pattern = regex::Regex::new(&PATTERN).expect("a valid pattern");
        // Each character alone, and after a visible one (where only controls are refused).
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            for body in [c.to_string(), format!("a{c}")] {
                let (spec, server) = (pattern.is_match(&body), normalize(&body).is_ok());
                if u32::from(c) > 0xFFFF && is_invisible(c) && body.chars().count() == 1 {
                    assert!(spec && !server, "{body:?}: the documented gap");
                } else {
                    assert_eq!(spec, server, "{body:?} (U+{:04X})", u32::from(c));
                }
            }
        }
    }
}
