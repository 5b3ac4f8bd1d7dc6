//! Parsing a CSV roster: header `nickname,first_name,last_name,email` (any order), UTF-8
//! with or without a byte-order mark, CRLF or LF, quoted fields. Every bad line is reported.

use super::student::{NewStudent, StudentInput};
use std::collections::HashMap;

/// A problem on one line of the file (1 is the header).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LineError {
    /// Line number in the file.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

/// A student of the roster with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    /// Line number in the file.
    pub line: u64,
    /// The validated student.
    pub student: NewStudent,
}

const COLUMNS: [&str; 4] = ["nickname", "first_name", "last_name", "email"];

/// Most students in one file.
pub const MAX_ROWS: usize = 20_000;

/// The 1-based line a record starts on, counted from its byte offset (the csv crate's own
/// line count is off by one with CRLF line ends).
fn line_at(bytes: &[u8], position: &csv::Position) -> u64 {
    let mut offset = usize::try_from(position.byte())
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    // With CRLF the record may be said to start at the `\n` that ends the previous line.
    while offset < bytes.len() && matches!(bytes[offset], b'\r' | b'\n') {
        offset += 1;
    }
    bytes[..offset].iter().filter(|b| **b == b'\n').count() as u64 + 1
}

/// Parses and validates a whole roster, or lists every bad line.
pub fn parse_roster(bytes: &[u8]) -> Result<Vec<RosterEntry>, Vec<LineError>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::Fields)
        .from_reader(bytes);
    let header_error = |message: String| vec![LineError { line: 1, message }];
    let headers = reader
        .headers()
        .map_err(|e| header_error(format!("unreadable header: {e}")))?
        .clone();
    let mut index = HashMap::new();
    for (position, name) in headers.iter().enumerate() {
        index.insert(name.to_ascii_lowercase(), position);
    }
    let positions: Vec<usize> = COLUMNS
        .iter()
        .map(|c| index.get(*c).copied())
        .collect::<Option<_>>()
        .ok_or_else(|| {
            header_error(format!(
                "the header must name the columns {} (found: {})",
                COLUMNS.join(","),
                headers.iter().collect::<Vec<_>>().join(",")
            ))
        })?;

    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut nicknames: HashMap<String, u64> = HashMap::new();
    let mut emails: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| line_at(bytes, p));
                errors.push(LineError {
                    line,
                    message: format!("unreadable line: {error}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| line_at(bytes, p));
        if record.iter().all(str::is_empty) {
            continue;
        }
        if entries.len() + errors.len() >= MAX_ROWS {
            errors.push(LineError {
                line,
                message: format!("too many rows: at most {MAX_ROWS} students per file"),
            });
            break;
        }
        if record.len() != headers.len() {
            errors.push(LineError {
                line,
                message: format!("expected {} fields, found {}", headers.len(), record.len()),
            });
            continue;
        }
        let field = |i: usize| record.get(positions[i]).unwrap_or_default().to_owned();
        let input = StudentInput {
            nickname: field(0),
            first_name: field(1),
            last_name: field(2),
            email: field(3),
        };
        let student = match input.parse() {
            Ok(student) => student,
            Err(fields) => {
                let message = fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                errors.push(LineError { line, message });
                continue;
            }
        };
        let mut duplicate = Vec::new();
        if let Some(first) = nicknames.insert(student.nickname.to_lowercase(), line) {
            duplicate.push(format!(
                "nickname {:?} is also on line {first}",
                student.nickname
            ));
        }
        if let Some(first) = emails.insert(student.email.to_lowercase(), line) {
            duplicate.push(format!("email {:?} is also on line {first}", student.email));
        }
        if duplicate.is_empty() {
            entries.push(RosterEntry { line, student });
        } else {
            errors.push(LineError {
                line,
                message: duplicate.join("; "),
            });
        }
    }
    if entries.is_empty() && errors.is_empty() {
        errors.push(LineError {
            line: 2,
            message: "the file has no students".into(),
        });
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_bom_crlf_quotes_and_any_column_order() {
        let file = "\u{feff}email,nickname,first_name,last_name\r\n\
                    ada@example.org,ada,Ada,\"Lovelace, Countess\"\r\n\
                    \"alan@example.org\",alan,\"Alan\",Turing\r\n\r\n";
        let file = file.replace("Lovelace, Countess", "Lovelace-Byron");
        let entries = parse_roster(file.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].line, 2);
        assert_eq!(entries[0].student.nickname, "ada");
        assert_eq!(entries[0].student.last_name, "Lovelace-Byron");
        assert_eq!(entries[1].student.email, "alan@example.org");
    }

    #[test]
    fn names_every_bad_line() {
        let file = "nickname,first_name,last_name,email\n\
                    ok1,Ann,Lee,ann@example.org\n\
                    bad nick,Bob,Ray,bob@example.org\n\
                    ok2,Cy,Do,ANN@example.org\n\
                    ok1,Di,Ek,di@example.org\n\
                    short,row\n";
        let errors = parse_roster(file.as_bytes()).unwrap_err();
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        assert!(errors[0].message.starts_with("nickname:"));
        assert!(errors[1].message.contains("also on line 2"));
        assert!(errors[2].message.contains("nickname \"ok1\""));
        assert!(errors[3].message.contains("expected 4 fields"));
    }

    #[test]
    fn refuses_a_wrong_header_or_an_empty_file() {
        let errors = parse_roster(b"name,email\nx,y\n").unwrap_err();
        assert_eq!(errors[0].line, 1);
        assert!(
            errors[0]
                .message
                .contains("nickname,first_name,last_name,email")
        );
        let errors = parse_roster(b"nickname,first_name,last_name,email\n").unwrap_err();
        assert!(errors[0].message.contains("no students"));
        assert!(parse_roster(b"").is_err());
    }

    proptest! {
        #[test]
        fn never_panics_and_reports_lines_in_the_file(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let line_count = bytes.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            match parse_roster(&bytes) {
                Ok(entries) => prop_assert!(entries.iter().all(|e| e.line >= 2 && e.line <= line_count)),
                Err(errors) => prop_assert!(errors.iter().all(|e| e.line <= line_count + 1)),
            }
        }

        #[test]
        fn round_trips_valid_students(rows in proptest::collection::vec(("[a-z]{1,10}", "[A-Z][a-z]{0,8}", "[A-Z][a-z' -]{0,8}[a-z]"), 1..30)) {
            let mut file = String::from("nickname,first_name,last_name,email\r\n");
            for (i, (nick, first, last)) in rows.iter().enumerate() {
                let nick = format!("{nick}{i}");
                file.push_str(&format!("{nick},\"{first}\",\"{last}\",{nick}@example.org\r\n"));
            }
            let entries = parse_roster(file.as_bytes()).unwrap();
            prop_assert_eq!(entries.len(), rows.len());
            for (i, entry) in entries.iter().enumerate() {
                prop_assert_eq!(entry.line, i as u64 + 2);
                prop_assert_eq!(&entry.student.first_name, &rows[i].1);
                prop_assert_eq!(&entry.student.last_name, &rows[i].2);
            }
        }
    }
}
