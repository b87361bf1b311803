//! Configurations the server must refuse at start, run as an operator would
//! run the binary: a non-zero exit and a message that names what to change,
//! never the secret itself.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use latchkey::domain::signing::{SigningAlg, SigningKey};

/// Starts `latchkey serve` with `args` and expects it to give up; a server
/// that starts is killed and fails the test.
pub fn refused(data_dir: &Path, args: &[&str]) -> String {
    refused_with(data_dir, args, None)
}

/// Like [`refused`], with one environment variable set.
pub fn refused_with_env(data_dir: &Path, args: &[&str], var: (&str, &Path)) -> String {
    refused_with(data_dir, args, Some(var))
}

fn refused_with(data_dir: &Path, args: &[&str], var: Option<(&str, &Path)>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command.env_clear();
    if let Some((name, value)) = var {
        command.env(name, value);
    }
    let mut child = command
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the latchkey binary runs");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("the server started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert!(!status.success(), "{args:?} exited 0");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn keys_that_do_not_fit_the_algorithm_are_refused() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let secret = "a-secret-of-more-than-thirty-two-bytes-0123";
    let pem = dir.path().join("ed25519.pem");
    std::fs::write(
        &pem,
        SigningKey::generate(SigningAlg::EdDSA)
            .unwrap()
            .private_text(),
    )
    .unwrap();
    let pem = pem.to_str().unwrap();

    // Act
    let secret_with_eddsa = refused(&data, &["--jwt-alg", "EdDSA", "--jwt-secret", secret]);
    let pem_with_hs256 = refused(&data, &["--jwt-key-file", pem]);
    let both = refused(&data, &["--jwt-secret", secret, "--jwt-key-file", pem]);

    // Assert
    assert!(
        secret_with_eddsa.contains("--jwt-key-file"),
        "{secret_with_eddsa}"
    );
    assert!(
        pem_with_hs256.contains("--jwt-alg EdDSA"),
        "{pem_with_hs256}"
    );
    assert!(both.contains("cannot be used with"), "{both}");
    for stderr in [&secret_with_eddsa, &both] {
        assert!(!stderr.contains(secret), "the secret is printed: {stderr}");
    }
}

#[test]
fn an_unreadable_or_wrong_key_file_is_refused() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let not_a_key = dir.path().join("cert.pem");
    std::fs::write(
        &not_a_key,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");

    // Act
    let wrong = refused(
        &data,
        &[
            "--jwt-alg",
            "EdDSA",
            "--jwt-key-file",
            not_a_key.to_str().unwrap(),
        ],
    );
    let absent = refused(
        &data,
        &[
            "--jwt-alg",
            "EdDSA",
            "--jwt-key-file",
            missing.to_str().unwrap(),
        ],
    );

    // Assert
    assert!(wrong.contains("PKCS#8"), "{wrong}");
    assert!(absent.contains("missing.pem"), "{absent}");
}

#[test]
fn a_short_secret_is_refused_without_being_printed() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();

    // Act
    let stderr = refused(&dir.path().join("data"), &["--jwt-secret", "hunter2-short"]);

    // Assert
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
    assert!(!stderr.contains("hunter2-short"), "{stderr}");
}

#[test]
fn a_weak_secret_is_refused_saying_how_to_make_one_without_being_printed() {
    // Arrange: long enough, but a pattern rather than random bytes.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let weak = "abcabcabcabcabcabcabcabcabcabcabcabcabcabc";
    let file = dir.path().join("jwt-secret");
    std::fs::write(&file, format!("{weak}\n")).unwrap();

    // Act
    let given = refused(&data, &["--jwt-secret", weak]);
    let in_file = refused(&data, &["--jwt-secret-file", file.to_str().unwrap()]);

    // Assert
    for (stderr, flag) in [(&given, "--jwt-secret"), (&in_file, "--jwt-secret-file")] {
        assert!(stderr.contains(flag), "{stderr}");
        assert!(stderr.contains("16 different byte values"), "{stderr}");
        assert!(stderr.contains("openssl rand -base64 48"), "{stderr}");
        assert!(!stderr.contains(weak), "the secret is printed: {stderr}");
    }
}

#[test]
fn a_missing_secret_file_is_refused_naming_it_from_the_flag_or_the_variable() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("no-such-secret");

    // Act
    let by_flag = refused(&data, &["--jwt-secret-file", missing.to_str().unwrap()]);
    let by_variable = refused_with_env(&data, &[], ("LATCHKEY_JWT_SECRET_FILE", &missing));

    // Assert
    for stderr in [&by_flag, &by_variable] {
        assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    }
}

#[test]
fn a_secret_file_with_another_signing_key_is_refused() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("jwt-secret");
    std::fs::write(&file, "a-secret-of-more-than-thirty-two-bytes-0123\n").unwrap();
    let file = file.to_str().unwrap();
    let secret = "a-secret-of-more-than-thirty-two-bytes-4567";

    // Act
    let with_secret = refused(&data, &["--jwt-secret-file", file, "--jwt-secret", secret]);
    let with_key = refused(&data, &["--jwt-secret-file", file, "--jwt-key-file", file]);

    // Assert
    for stderr in [&with_secret, &with_key] {
        assert!(stderr.contains("cannot be used with"), "{stderr}");
        assert!(stderr.contains("--jwt-secret-file"), "{stderr}");
    }
    assert!(!with_secret.contains(secret), "{with_secret}");
}

#[test]
fn a_damaged_keyring_is_refused_and_named() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join(latchkey::keyring::KEYRING_FILE), "{ not json").unwrap();

    // Act
    let stderr = refused(&data, &[]);

    // Assert
    assert!(stderr.contains(latchkey::keyring::KEYRING_FILE), "{stderr}");
}

#[test]
fn an_issuer_that_is_not_a_base_url_is_refused() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Act
    let name = refused(&data, &["--issuer", "latchkey"]);
    let with_path = refused(&data, &["--issuer", "https://example.com/auth"]);

    // Assert
    assert!(name.contains("--issuer"), "{name}");
    assert!(with_path.contains("without a path"), "{with_path}");
}

#[test]
fn cors_origins_that_are_not_exact_origins_are_refused() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Act
    let every = refused(&data, &["--cors-origins", "*"]);
    let with_path = refused(&data, &["--cors-origins", "https://app.example.com/"]);
    let malformed = refused_with_env(
        &data,
        &[],
        (
            "LATCHKEY_CORS_ORIGINS",
            Path::new("https://app.example.com,app.example.org"),
        ),
    );

    // Assert
    assert!(every.contains("exact origins"), "{every}");
    assert!(with_path.contains("no path"), "{with_path}");
    assert!(
        with_path.contains("`https://app.example.com`"),
        "{with_path}"
    );
    assert!(malformed.contains("`app.example.org`"), "{malformed}");
}

#[test]
fn a_database_url_of_another_kind_is_refused_without_being_printed() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Act
    let mysql = refused(
        &data,
        &["--database-url", "mysql://root:hunter2@localhost/latchkey"],
    );
    let path = refused(&data, &["--database-url", "/var/lib/latchkey.db"]);

    // Assert
    assert!(mysql.contains("--database-url"), "{mysql}");
    assert!(mysql.contains("postgres://"), "{mysql}");
    assert!(
        !mysql.contains("hunter2"),
        "the password is printed: {mysql}"
    );
    assert!(path.contains("sqlite://"), "{path}");
}

#[test]
fn an_unreachable_postgresql_server_stops_the_start_within_seconds() {
    // Arrange: a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://latchkey:hunter2@127.0.0.1:{port}/latchkey");
    let started = Instant::now();

    // Act
    let stderr = refused(&dir.path().join("data"), &["--database-url", &url]);

    // Assert
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "gave up after {:?}",
        started.elapsed()
    );
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is printed: {stderr}"
    );
}

#[test]
fn an_audit_retention_of_zero_or_of_no_duration_is_refused() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Act
    let zero = refused(&data, &["--audit-retention", "0s"]);
    let from_env = refused_with_env(
        &data,
        &[],
        ("LATCHKEY_AUDIT_RETENTION", std::path::Path::new("forever")),
    );

    // Assert
    assert!(zero.contains("--audit-retention"), "{zero}");
    assert!(zero.contains("longer than zero"), "{zero}");
    assert!(from_env.contains("--audit-retention"), "{from_env}");
}
