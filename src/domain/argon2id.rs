//! argon2id hashes and checks whose 19 MiB of working memory go back to the
//! system when they are done.
//!
//! The argon2 crate's own `hash_password` and `verify_password` allocate
//! that memory as one `Vec` per run. glibc serves the first such block with
//! `mmap` and returns it, but then raises its mmap threshold past that size
//! and serves later ones from per-thread heaps that keep the pages once
//! freed: a burst of 20 logins left the process some 340 MiB larger for
//! good. glibc never raises the threshold past 32 MiB, so a block reserved
//! larger than that is always mapped on its own and unmapped when dropped.
//! Only the part argon2 uses is ever touched, so a run still costs 19 MiB
//! while it lasts. The parameters, and so the hashes, are the crate's.

use argon2::{
    password_hash::{self, rand_core::OsRng, Output, PasswordHash, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};

/// Larger than the largest block glibc may keep in a heap (32 MiB).
const MAPPED_ON_ITS_OWN: usize = (32 << 20) / Block::SIZE + 1;

/// Working memory for `count` blocks, reserved large enough to be mapped on
/// its own.
fn memory(count: usize) -> Vec<Block> {
    let mut blocks = Vec::with_capacity(count.max(MAPPED_ON_ITS_OWN));
    blocks.resize(count, Block::default());
    blocks
}

/// Hashes `password` with a new salt and the default parameters, as a PHC
/// string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash(password: &[u8]) -> Result<String, password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::default();
    let output = run(
        Algorithm::Argon2id,
        Version::V0x13,
        &params,
        password,
        &salt,
    )?;
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into()?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Whether `password` matches `stored`, with the algorithm, version and
/// parameters `stored` names. The comparison takes constant time.
pub fn verify(password: &[u8], stored: &PasswordHash<'_>) -> Result<bool, password_hash::Error> {
    let algorithm = Algorithm::try_from(stored.algorithm)?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(stored)?;
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
        return Err(password_hash::Error::PhcStringField);
    };
    let salt = SaltString::from_b64(salt.as_str())?;
    let params = Params::new(
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        Some(expected.len()),
    )?;
    Ok(run(algorithm, version, &params, password, &salt)? == expected)
}

fn run(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &SaltString,
) -> Result<Output, password_hash::Error> {
    let mut salt_bytes = [0; password_hash::Salt::MAX_LENGTH];
    let salt = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let mut out = vec![0; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(
        password,
        salt,
        &mut out,
        memory(params.block_count()),
    )?;
    Output::new(&out)
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn its_hashes_verify_with_the_crates_own_check() {
        let stored = hash(b"correct horse battery staple").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery staple", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"wrong", &parsed)
            .is_err());
    }

    #[test]
    fn it_verifies_the_crates_own_hashes_and_refuses_a_wrong_password() {
        let salt = SaltString::generate(&mut OsRng);
        let stored = Argon2::default()
            .hash_password(b"correct horse battery staple", &salt)
            .unwrap()
            .to_string();
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(verify(b"correct horse battery staple", &parsed).unwrap());
        assert!(!verify(b"correct horse battery stapler", &parsed).unwrap());
    }

    #[test]
    fn it_verifies_hashes_made_with_other_parameters() {
        let params = Params::new(8 * 1024, 1, 2, Some(16)).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"an older hash", &salt)
            .unwrap()
            .to_string();
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(verify(b"an older hash", &parsed).unwrap());
        assert!(!verify(b"another password", &parsed).unwrap());
    }

    #[test]
    fn the_working_memory_is_reserved_past_the_heap_limit_but_sized_to_the_run() {
        let blocks = memory(Params::default().block_count());
        assert_eq!(blocks.len(), 19 * 1024);
        assert!(blocks.capacity() * Block::SIZE > 32 << 20);
    }
}
