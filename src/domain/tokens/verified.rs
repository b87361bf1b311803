//! Tokens whose signature and claims this thread has already checked, so a
//! client that sends the same token again costs a lookup, not a signature
//! check.
//!
//! One small cache per thread, not one shared: a benchmark's connections,
//! like a busy client's, all send one token, and a shared cache (sharded or
//! not) would put every request on the lock of the shard that token falls
//! in. A thread's own cache takes no lock at all; the price is that each
//! worker thread checks a token once, which is a handful of signature
//! checks per token.
//!
//! An entry is only as good as the key set that verified it: it carries that
//! set's id, and a thread that meets another set (a rotation, or another
//! server in the same process) empties its cache first, so a key that leaves
//! takes its tokens' entries with it. What changes with time is checked on
//! every hit: the expiry by `Tokens::verify`, the revocations by its caller. The rules
//! about `iat` and `nbf` lying in the future need no second look: a token
//! that passed them once passes them later.

use std::cell::RefCell;

use quick_cache::{unsync::Cache, Weighter};

use super::Claims;

/// The bytes a thread's entries may take, tokens and claims counted, which
/// bounds what any number of clients can cost: some 6000 tokens of this
/// server's size (a few hundred bytes). A token longer than a tenth of it is
/// not kept.
const BYTES: u64 = 4 << 20;
/// What the table is first sized for.
const ENTRIES: usize = 4096;

struct Verified {
    /// The id of the key set the entries were verified with.
    keys: u64,
    tokens: Cache<Box<str>, Claims, Size>,
}

#[derive(Clone)]
struct Size;

impl Weighter<Box<str>, Claims> for Size {
    fn weight(&self, token: &Box<str>, claims: &Claims) -> u64 {
        (token.len() + claims.client_id.len() + std::mem::size_of::<(Box<str>, Claims)>()) as u64
    }
}

thread_local! {
    static VERIFIED: RefCell<Verified> = RefCell::new(Verified {
        keys: 0,
        tokens: Cache::with_weighter(ENTRIES, BYTES, Size),
    });
}

/// The claims of `token` if this thread verified it with key set `keys`.
pub(super) fn get(keys: u64, token: &str) -> Option<Claims> {
    VERIFIED.with_borrow(|v| {
        if v.keys != keys {
            return None;
        }
        v.tokens.get(token).cloned()
    })
}

/// Remembers that key set `keys` verified `token` to `claims`.
pub(super) fn put(keys: u64, token: &str, claims: &Claims) {
    if token.len() as u64 > BYTES / 10 {
        return;
    }
    VERIFIED.with_borrow_mut(|v| {
        if v.keys != keys {
            v.tokens.clear();
            v.keys = keys;
        }
        v.tokens.insert(token.into(), claims.clone());
    });
}

/// Forgets `token`, once it has expired.
pub(super) fn forget(keys: u64, token: &str) {
    VERIFIED.with_borrow_mut(|v| {
        if v.keys == keys {
            v.tokens.remove(token);
        }
    });
}
