//! The HS256 signing secret: from configuration, or generated once into the
//! data directory and reused on every start after.

use std::{
    fs,
    io::{ErrorKind, Write},
    path::Path,
};

use anyhow::{bail, Context};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::TryRngCore;

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
pub const MIN_SECRET_BYTES: usize = 32;
pub const SECRET_FILE: &str = "jwt-secret";

pub fn load_or_generate(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured {
        if secret.len() < MIN_SECRET_BYTES {
            bail!("the JWT secret must be at least {MIN_SECRET_BYTES} bytes long");
        }
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() < MIN_SECRET_BYTES {
                bail!(
                    "{} holds fewer than {MIN_SECRET_BYTES} bytes",
                    path.display()
                );
            }
            Ok(secret.as_bytes().to_vec())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng
                .try_fill_bytes(&mut bytes)
                .context("reading the OS random number generator")?;
            // Stored as text, so it can be copied into LATCHKEY_JWT_SECRET to
            // share it with another instance.
            let secret = URL_SAFE_NO_PAD.encode(bytes);
            write_private(&path, &secret)
                .with_context(|| format!("writing the JWT secret to {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a JWT signing secret");
            Ok(secret.into_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Creates the file readable by its owner only, from the first byte written.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(None, dir.path()).unwrap();
        assert!(first.len() >= MIN_SECRET_BYTES);
        assert_eq!(load_or_generate(None, dir.path()).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_short_configured_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_or_generate(Some("short"), dir.path()).is_err());
        let long = "x".repeat(32);
        assert_eq!(
            load_or_generate(Some(&long), dir.path()).unwrap(),
            long.as_bytes()
        );
    }
}
