//! Secrets read from files, so they stay out of the configuration file and the environment.

use std::path::Path;

use crate::ConfigError;

/// Reads a secret from `path`, dropping one trailing newline (as `echo` and editors add).
/// `what` names the setting in the error, e.g. `smtp.password_file`.
pub(crate) fn read_secret_file(path: &Path, what: &str) -> Result<String, ConfigError> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("{what}: cannot read {}: {e}", path.display())))?;
    let secret = raw.strip_suffix('\n').unwrap_or(&raw);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err(ConfigError::new(format!(
            "{what}: {} is empty",
            path.display()
        )));
    }
    Ok(secret.to_string())
}

/// Placeholder for a secret in `Debug` output.
pub(crate) fn redact(s: &str) -> &'static str {
    if s.is_empty() {
        "<unset>"
    } else {
        "<redacted>"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_one_newline_and_refuses_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret \n").unwrap();
        assert_eq!(read_secret_file(&p, "x").unwrap(), "s3cret ");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_secret_file(&p, "x").unwrap_err().0.contains("empty"));
        assert!(
            read_secret_file(&dir.path().join("missing"), "smtp.password_file")
                .unwrap_err()
                .0
                .contains("smtp.password_file")
        );
    }
}
