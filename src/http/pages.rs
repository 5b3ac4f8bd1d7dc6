//! The student and examiner pages: HTML shells with a little plain JavaScript and CSS, all
//! compiled into the binary (no CDN, no build step). Scripts are separate files, so the
//! Content-Security-Policy needs no inline script.

use super::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

const UPLOAD_HTML: &str = include_str!("../../assets/upload.html");
const VERIFY_HTML: &str = include_str!("../../assets/verify.html");
const EXAMINER_HTML: &str = include_str!("../../assets/examiner.html");

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    ),
    (
        "upload.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/upload.js"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/verify.js"),
    ),
    (
        "examiner.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/examiner.js"),
    ),
];

/// A size for people: `3 MiB`, `512 KiB`.
pub fn human_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else if bytes >= 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

fn render(state: &AppState, template: &str) -> Html<String> {
    let rules = &state.depository.rules;
    Html(
        template
            .replace("{{MAX_BYTES}}", &rules.max_submission_bytes.to_string())
            .replace("{{MAX_HUMAN}}", &human_size(rules.max_submission_bytes))
            .replace(
                "{{MAX_UPLOADS}}",
                &rules.submissions_per_student.to_string(),
            ),
    )
}

/// `/upload`: the student page.
pub async fn upload_page(State(state): State<AppState>) -> Html<String> {
    render(&state, UPLOAD_HTML)
}

/// `/verify`: download with a verification code.
pub async fn verify_page(State(state): State<AppState>) -> Html<String> {
    render(&state, VERIFY_HTML)
}

/// `/examiner`: the examiner page.
pub async fn examiner_page(State(state): State<AppState>) -> Html<String> {
    render(&state, EXAMINER_HTML)
}

/// `/assets/{name}`: the pages' scripts and stylesheet.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                ),
            ],
            *body,
        )
            .into_response(),
        None => super::status_only(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(3 * 1024 * 1024), "3 MiB");
        assert_eq!(human_size(1536 * 1024), "1.5 MiB");
        assert_eq!(human_size(2048), "2 KiB");
        assert_eq!(human_size(10), "10 bytes");
    }

    #[test]
    fn pages_load_no_inline_script_and_nothing_remote() {
        for page in [UPLOAD_HTML, VERIFY_HTML, EXAMINER_HTML] {
            for tag in page.split("<script").skip(1) {
                assert!(
                    tag.trim_start().starts_with("src=\"/assets/"),
                    "inline script: {tag}"
                );
            }
            assert!(!page.contains("http://") && !page.contains("https://"));
            let handler = page.split(" on").skip(1).any(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(!handler, "no inline event handlers");
        }
    }
}
