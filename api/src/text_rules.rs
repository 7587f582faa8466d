//! Which text may be a user id (a token's `sub`), in one place, so every way a user id enters
//! tally is held to the same rules; and the character classes and NFC form that the comment
//! body's rules (`comments::body`) share with it.
//!
//! A user id is shown to other users (likers lists, comment authors) and compared code point
//! for code point by Postgres. So two ids that look the same must be the same id: ids are
//! normalized to NFC (an "é" sent precomposed or as "e" + combining accent is one user). And an
//! id must not hide or reorder the text around it: control characters, format characters
//! (zero-width spaces and joiners, bidi overrides and isolates, soft hyphens, ...) and line or
//! paragraph separators are refused, as are blank ids and ids with whitespace at either end.
//!
//! The Unicode tables come from `unicode-normalization` and `unicode-properties` (General
//! Category), which track the Unicode releases, rather than from hand-written ranges.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The longest user id tally stores, in characters (code points) after normalization.
pub const MAX_USER_ID_CHARS: usize = 128;

/// Why a text is not a user id. Displayed after "the user id ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    #[error("is empty")]
    Empty,
    #[error("is only whitespace")]
    Blank,
    #[error("begins or ends with whitespace")]
    EdgeWhitespace,
    #[error("is longer than {MAX_USER_ID_CHARS} characters")]
    TooLong,
    #[error("contains U+{code:04X}, {class}; user ids may not")]
    Forbidden { code: u32, class: &'static str },
}

/// Whether `c` is a control character (general category Cc).
pub fn is_control(c: char) -> bool {
    c.general_category() == GeneralCategory::Control
}

/// Whether `c` is an invisible format character (general category Cf: zero-width
/// characters, bidi overrides and isolates, soft hyphens, ...).
pub fn is_format(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// The kind of character `c` is, when a user id may not contain it.
fn forbidden_class(c: char) -> Option<&'static str> {
    match c.general_category() {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::Format => {
            Some("an invisible format character (zero-width, bidi control and the like)")
        }
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("a line or paragraph separator")
        }
        _ => None,
    }
}

/// Whether a user id may not contain `c`: control (Cc), format (Cf: zero-width characters,
/// bidi overrides and isolates, ...) and line or paragraph separator (Zl, Zp) characters.
pub fn is_forbidden_in_user_id(c: char) -> bool {
    forbidden_class(c).is_some()
}

/// `text` in Unicode Normalization Form C, borrowed when it already is (the common case).
pub fn to_nfc(text: &str) -> Cow<'_, str> {
    if unicode_normalization::is_nfc(text) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfc().collect())
    }
}

/// The user id `raw` names, in NFC, or why it is none.
pub fn user_id(raw: &str) -> Result<String, UserIdError> {
    let id = to_nfc(raw);
    if id.is_empty() {
        return Err(UserIdError::Empty);
    }
    if let Some((c, class)) = id.chars().find_map(|c| forbidden_class(c).map(|k| (c, k))) {
        return Err(UserIdError::Forbidden {
            code: u32::from(c),
            class,
        });
    }
    if id.chars().all(char::is_whitespace) {
        return Err(UserIdError::Blank);
    }
    if id.starts_with(char::is_whitespace) || id.ends_with(char::is_whitespace) {
        return Err(UserIdError::EdgeWhitespace);
    }
    if id.chars().count() > MAX_USER_ID_CHARS {
        return Err(UserIdError::TooLong);
    }
    Ok(id.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composed_and_decomposed_forms_are_one_user_id() {
        let composed = user_id("jos\u{e9}").expect("an id");
        let decomposed = user_id("jose\u{301}").expect("an id");
        assert_eq!(composed, decomposed);
        assert_eq!(composed, "jos\u{e9}");
    }

    #[test]
    fn ordinary_ids_are_kept_as_they_are() {
        for id in [
            "alice",
            "bob.the.builder",
            "auth0|5f7c",
            "Ünïcødé 名前",
            "👍",
            "a b",
        ] {
            assert_eq!(user_id(id).as_deref(), Ok(id));
        }
    }

    #[test]
    fn control_format_bidi_and_separator_characters_are_refused() {
        for c in [
            '\0', '\u{7}', '\u{1b}', '\n', '\t', '\u{7f}', '\u{85}', // Cc
            '\u{200b}', '\u{200c}', '\u{200d}', '\u{2060}', '\u{feff}', '\u{ad}', // Cf
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', // bidi embeddings
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200e}',
            '\u{200f}', // isolates
            '\u{2028}', '\u{2029}', // Zl, Zp
        ] {
            assert!(is_forbidden_in_user_id(c), "U+{:04X}", u32::from(c));
            let id = format!("al{c}ice");
            assert!(
                matches!(user_id(&id), Err(UserIdError::Forbidden { code, .. }) if code == u32::from(c)),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn blank_and_padded_ids_are_refused() {
        assert_eq!(user_id(""), Err(UserIdError::Empty));
        for blank in ["  ", " ", "\u{a0}", "\u{3000}\u{2003}"] {
            assert_eq!(user_id(blank), Err(UserIdError::Blank), "{blank:?}");
        }
        for padded in [" alice", "alice ", "\u{a0}alice"] {
            assert_eq!(
                user_id(padded),
                Err(UserIdError::EdgeWhitespace),
                "{padded:?}"
            );
        }
        assert_eq!(
            user_id("\u{200b}"),
            Err(UserIdError::Forbidden {
                code: 0x200b,
                class: "an invisible format character (zero-width, bidi control and the like)"
            })
        );
    }

    #[test]
    fn the_length_limit_counts_characters_after_normalization() {
        // 128 "é" written decomposed are 256 code points, 128 once composed.
        assert!(user_id(&"e\u{301}".repeat(MAX_USER_ID_CHARS)).is_ok());
        assert!(user_id(&"é".repeat(MAX_USER_ID_CHARS)).is_ok());
        assert_eq!(
            user_id(&"a".repeat(MAX_USER_ID_CHARS + 1)),
            Err(UserIdError::TooLong)
        );
    }
}
