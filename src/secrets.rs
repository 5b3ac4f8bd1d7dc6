//! Secrets the embedded default generates on first start and keeps in DATA_DIR with
//! owner-only permissions: the examiner API key and the download-link signing key.

use crate::domain::codes;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A secret read from `path`, or generated and written there. The flag tells whether it
/// was generated now.
pub fn load_or_generate(path: &Path) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(existing) if !existing.trim().is_empty() => {
            return Ok((existing.trim().to_owned(), false));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = codes::new_secret();
    write_secret(path, &secret)?;
    Ok((secret, true))
}

/// Writes a secret to `path`, readable by the owner only.
pub fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{secret}")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key");
        let (first, generated) = load_or_generate(&path).unwrap();
        assert!(generated);
        assert!(first.len() >= 43);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (second, generated) = load_or_generate(&path).unwrap();
        assert!(!generated);
        assert_eq!(first, second);
    }
}
