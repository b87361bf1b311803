//! Files and directories only their owner can read: the data directory, the
//! database and the signing keyring hold secrets (hashes, keys), so nothing
//! in it may be readable by other users, whatever the umask or the mode of a
//! directory that already existed.

use std::{fs, io, path::Path};

/// Creates `path` and its parents, mode 0700. An existing directory keeps its
/// mode: the files inside it are protected one by one.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Creates a new file, mode 0600 from its first byte; fails if it exists.
pub fn create_new_file(path: &Path) -> io::Result<fs::File> {
    options().create_new(true).open(path)
}

/// Opens a file for writing, creating it (mode 0600) if it is missing, and
/// leaving its contents as they are.
pub fn open_or_create(path: &Path) -> io::Result<fs::File> {
    options().create(true).truncate(false).open(path)
}

/// Makes an existing file owner-only; a missing file is not an error.
pub fn restrict(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match fs::set_permissions(path, fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

fn options() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_the_owner_s_alone() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_dir_all(&sub).unwrap();
        assert_eq!(mode(&sub), 0o700);
        let file = sub.join("f");
        create_new_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert!(
            create_new_file(&file).is_err(),
            "create_new refuses an existing file"
        );
        open_or_create(&sub.join("g")).unwrap();
        assert_eq!(mode(&sub.join("g")), 0o600);
    }

    #[test]
    fn restrict_narrows_an_existing_file_and_ignores_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wide");
        fs::write(&file, "x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        restrict(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        restrict(&dir.path().join("missing")).unwrap();
    }
}
