//! Sanitising the file name a student's browser sends: it is kept as metadata and shown
//! back in `Content-Disposition`, never used as a path.

/// Longest kept file name, in bytes.
pub const MAX_FILENAME_BYTES: usize = 200;
/// The name used when nothing usable is left.
pub const FALLBACK_FILENAME: &str = "submission";

/// Keeps the last path component, drops control and reserved characters, trims dots and
/// spaces at the ends and caps the length at a character boundary.
pub fn sanitize_filename(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | ':' | '|' | '?' | '*'))
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let mut name = String::new();
    for c in trimmed.chars() {
        if name.len() + c.len_utf8() > MAX_FILENAME_BYTES {
            break;
        }
        name.push(c);
    }
    let name = name.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if name.is_empty() {
        FALLBACK_FILENAME.to_owned()
    } else {
        name.to_owned()
    }
}

/// A `Content-Disposition: attachment` value with an ASCII fallback and the UTF-8 name
/// (RFC 6266).
pub fn attachment_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(filename, RFC5987_ESCAPE);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Everything but RFC 5987 `attr-char`s is escaped.
const RFC5987_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// A content type as sent by the client when it is a plain `type/subtype`, otherwise
/// `application/octet-stream`.
pub fn sanitize_content_type(raw: Option<&str>) -> String {
    const FALLBACK: &str = "application/octet-stream";
    let Some(raw) = raw else {
        return FALLBACK.into();
    };
    let essence = raw.split(';').next().unwrap_or_default().trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => essence.to_ascii_lowercase(),
        _ => FALLBACK.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_ordinary_names() {
        assert_eq!(sanitize_filename("answer.pdf"), "answer.pdf");
        assert_eq!(sanitize_filename("Lösung 1.docx"), "Lösung 1.docx");
    }

    #[test]
    fn strips_paths_and_dangerous_characters() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\me\\a.txt"), "a.txt");
        assert_eq!(sanitize_filename("..."), FALLBACK_FILENAME);
        assert_eq!(sanitize_filename(""), FALLBACK_FILENAME);
        assert_eq!(sanitize_filename("a\r\nb\"c.txt"), "abc.txt");
        assert_eq!(sanitize_filename(".bashrc"), "bashrc");
    }

    #[test]
    fn caps_length_on_a_character_boundary() {
        let name = sanitize_filename(&"é".repeat(300));
        assert!(name.len() <= MAX_FILENAME_BYTES);
        assert_eq!(name.chars().count(), MAX_FILENAME_BYTES / 2);
    }

    #[test]
    fn disposition_has_ascii_fallback_and_utf8_name() {
        assert_eq!(
            attachment_disposition("Lösung 1.pdf"),
            "attachment; filename=\"L_sung 1.pdf\"; filename*=UTF-8''L%C3%B6sung%201.pdf"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            sanitize_content_type(Some("application/pdf")),
            "application/pdf"
        );
        assert_eq!(
            sanitize_content_type(Some("Text/Plain; charset=utf-8")),
            "text/plain"
        );
        assert_eq!(
            sanitize_content_type(Some("bogus")),
            "application/octet-stream"
        );
        assert_eq!(
            sanitize_content_type(Some("a/b\r\nX: y")),
            "application/octet-stream"
        );
        assert_eq!(sanitize_content_type(None), "application/octet-stream");
    }

    proptest! {
        #[test]
        fn sanitized_names_are_safe(raw in any::<String>()) {
            let name = sanitize_filename(&raw);
            prop_assert!(!name.is_empty());
            prop_assert!(name.len() <= MAX_FILENAME_BYTES);
            prop_assert!(!name.contains(['/', '\\', '"']));
            prop_assert!(!name.chars().any(char::is_control));
            prop_assert!(name != "." && name != "..");
            prop_assert!(!name.starts_with('.'));
        }

        #[test]
        fn sanitizing_is_idempotent(raw in any::<String>()) {
            let once = sanitize_filename(&raw);
            prop_assert_eq!(sanitize_filename(&once), once);
        }

        #[test]
        fn dispositions_are_valid_header_values(raw in any::<String>()) {
            let value = attachment_disposition(&sanitize_filename(&raw));
            prop_assert!(axum::http::HeaderValue::from_str(&value).is_ok());
            prop_assert!(value.is_ascii());
        }
    }
}
