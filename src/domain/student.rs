//! The rules for registering a student: "parse, don't validate".

use serde::Deserialize;

/// Longest nickname.
pub const NICKNAME_MAX: usize = 12;
/// Longest first or last name, in characters.
pub const NAME_MAX: usize = 254;
/// Longest e-mail address (RFC 5321 path limit).
pub const EMAIL_MAX: usize = 254;

/// A student as submitted by an examiner, before validation.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct StudentInput {
    /// 1–12 letters or digits, unique.
    #[schema(pattern = "^[A-Za-z0-9]{1,12}$", min_length = 1, max_length = 12)]
    pub nickname: String,
    /// 1–254 characters: letters, spaces, `-`, `'`, `.`; at least one letter
    /// (`[^\W\d_]` is a letter in the pattern).
    #[schema(
        pattern = "^[ .'-]*[^\\W\\d_](?:[^\\W\\d_]|[ .'-])*$",
        min_length = 1,
        max_length = 254
    )]
    pub first_name: String,
    /// 1–254 characters: letters, spaces, `-`, `'`, `.`; at least one letter.
    #[schema(
        pattern = "^[ .'-]*[^\\W\\d_](?:[^\\W\\d_]|[ .'-])*$",
        min_length = 1,
        max_length = 254
    )]
    pub last_name: String,
    /// A valid e-mail address, unique.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

/// A student whose fields passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStudent {
    /// Validated nickname.
    pub nickname: String,
    /// Validated first name.
    pub first_name: String,
    /// Validated last name.
    pub last_name: String,
    /// Validated e-mail address.
    pub email: String,
}

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name as in the request body.
    pub field: &'static str,
    /// A human-readable reason.
    pub message: String,
}

impl StudentInput {
    /// Checks every field and reports all failures at once.
    pub fn parse(self) -> Result<NewStudent, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut check = |field: &'static str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.push(FieldError { field, message });
            }
        };
        check("nickname", validate_nickname(&self.nickname));
        check("first_name", validate_name(&self.first_name));
        check("last_name", validate_name(&self.last_name));
        check("email", validate_email(&self.email));
        if errors.is_empty() {
            Ok(NewStudent {
                nickname: self.nickname,
                first_name: self.first_name,
                last_name: self.last_name,
                email: self.email,
            })
        } else {
            Err(errors)
        }
    }
}

/// 1–12 ASCII letters or digits (nicknames appear in URLs and archive paths).
pub fn validate_nickname(nickname: &str) -> Result<(), String> {
    if nickname.is_empty() || nickname.len() > NICKNAME_MAX {
        return Err(format!("must be 1 to {NICKNAME_MAX} characters long"));
    }
    if !nickname.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("may contain only letters and digits".into());
    }
    Ok(())
}

/// 1–254 characters of letters, spaces and name punctuation, with at least one letter.
pub fn validate_name(name: &str) -> Result<(), String> {
    let count = name.chars().count();
    if count == 0 || count > NAME_MAX {
        return Err(format!("must be 1 to {NAME_MAX} characters long"));
    }
    if !name
        .chars()
        .all(|c| c.is_alphabetic() || matches!(c, ' ' | '-' | '\'' | '.'))
    {
        return Err("may contain only letters, spaces and the characters - ' .".into());
    }
    if !name.chars().any(char::is_alphabetic) {
        return Err("must contain at least one letter".into());
    }
    Ok(())
}

/// A pragmatic address check: `local@domain.tld`, no spaces or control characters, sane lengths.
pub fn validate_email(email: &str) -> Result<(), String> {
    const INVALID: &str = "is not a valid e-mail address";
    if email.is_empty() || email.len() > EMAIL_MAX {
        return Err(INVALID.into());
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(INVALID.into());
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().all(char::is_alphabetic) && tld.len() >= 2);
    if local_ok && domain_ok {
        Ok(())
    } else {
        Err(INVALID.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(nickname: &str, first: &str, last: &str, email: &str) -> StudentInput {
        StudentInput {
            nickname: nickname.into(),
            first_name: first.into(),
            last_name: last.into(),
            email: email.into(),
        }
    }

    #[test]
    fn accepts_a_typical_student() {
        let parsed = input("ada1", "Ada", "Lovelace-King", "ada@example.org").parse();
        assert!(parsed.is_ok());
        assert!(
            input("Zoë", "Zoë", "O'Brien Jr.", "z.o+exam@uni.example.ac.uk")
                .parse()
                .is_err()
        );
        assert!(
            input("Zoe", "Zoë", "O'Brien Jr.", "z.o+exam@uni.example.ac.uk")
                .parse()
                .is_ok()
        );
    }

    #[test]
    fn nickname_limits() {
        assert!(validate_nickname("a").is_ok());
        assert!(validate_nickname("abcdefghijk1").is_ok());
        assert!(validate_nickname("abcdefghijk12").is_err());
        assert!(validate_nickname("").is_err());
        assert!(validate_nickname("ab cd").is_err());
        assert!(validate_nickname("ab_cd").is_err());
        assert!(validate_nickname("../x").is_err());
    }

    #[test]
    fn name_limits() {
        assert!(validate_name(&"a".repeat(254)).is_ok());
        assert!(validate_name(&"a".repeat(255)).is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("   ").is_err());
        assert!(validate_name("Jean-Luc").is_ok());
        assert!(validate_name("Robert'); DROP TABLE").is_err());
        assert!(validate_name("<script>").is_err());
        assert!(validate_name("Anna2").is_err());
    }

    #[test]
    fn email_shapes() {
        for good in ["a@b.co", "first.last@sub.example.com", "x+y@example.io"] {
            assert!(validate_email(good).is_ok(), "{good}");
        }
        for bad in [
            "", "plain", "a@b", "@b.co", "a@.co", "a@b.c", "a b@c.co", "a@b..co", ".a@b.co",
            "a@-b.co", "a@b.co\n",
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
        assert!(validate_email(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn reports_every_bad_field() {
        let errors = input("", "", "1", "nope").parse().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["nickname", "first_name", "last_name", "email"]);
    }
}
