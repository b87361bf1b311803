//! One instance cut off from PostgreSQL while another still reaches it: the
//! cut-off instance keeps verifying tokens, answers everything that needs the
//! database with a prompt `503` (never a `500`, never a hang), serves again
//! once the link heals, without a restart, and then refuses what was revoked
//! meanwhile. The cut is a TCP proxy the test owns between that instance and
//! the database.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use latchkey::{config::Config, db::Backend, revocations::FRESH_FOR};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::{
    helpers::{
        assert_oauth_error, assert_problem, assert_revoked, refused_within, skipped_unless,
        spawn_app_with, TestApp, TestKey, TestUser, ISSUER,
    },
    proxy::Proxy,
};

/// A `503` must come this soon after the request was sent, however the
/// database fails.
const ANSWERED_WITHIN: Duration = Duration::from_secs(5);

/// After the heal: how long the instance may take to serve again, and to
/// learn the revocations it missed. Generous, for a busy CI machine; the
/// feed reloads twice a second once it can.
const BACK_WITHIN: Duration = Duration::from_secs(5);

/// Longer than any answer may take: a request still pending then has hung.
const HUNG: Duration = Duration::from_secs(30);

/// How long the cut lasts at least: longer than [`ANSWERED_WITHIN`], so
/// that a request waiting for an answer the cut swallowed is seen to wait
/// too long rather than rescued by the heal.
const CUT_FOR: Duration = Duration::from_secs(6);

/// `a` on its database directly, `b` on the same one through `proxy`. Both
/// use `a`'s data directory, so they sign with one keyring.
struct Pair {
    a: TestApp,
    b: TestApp,
    proxy: Proxy,
}

async fn pair() -> Pair {
    pair_with(|_| {}).await
}

/// [`pair`], both configured by `configure`.
async fn pair_with(configure: impl Fn(&mut Config)) -> Pair {
    let a = spawn_app_with(|c| {
        c.issuer = Some(ISSUER.into());
        configure(c);
    })
    .await;
    let mut url = reqwest::Url::parse(&a.database.url()).expect("a PostgreSQL URL");
    let server: SocketAddr = tokio::net::lookup_host((
        url.host_str().expect("the database has a host"),
        url.port().unwrap_or(5432),
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    let proxy = Proxy::start(server).await;
    url.set_ip_host(proxy.addr().ip()).unwrap();
    url.set_port(Some(proxy.addr().port())).unwrap();
    let b = a
        .another_instance_with(|c| {
            c.database_url = Some(url.into());
            configure(c);
        })
        .await;
    Pair { a, b, proxy }
}

/// Sends a request and times its answer; a request that outlives [`HUNG`]
/// fails the test.
async fn timed(request: impl Future<Output = Response>) -> (Response, Duration) {
    let sent = Instant::now();
    let resp = tokio::time::timeout(HUNG, request)
        .await
        .expect("answered, not hung");
    (resp, sent.elapsed())
}

/// A prompt `503` problem with `Retry-After`.
async fn assert_unavailable(what: &str, (resp, took): (Response, Duration)) {
    assert!(took < ANSWERED_WITHIN, "{what} answered after {took:?}");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert_retry_after(what, &resp);
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
}

/// A prompt RFC 6749 `temporarily_unavailable` with `Retry-After`.
async fn assert_temporarily_unavailable(what: &str, (resp, took): (Response, Duration)) {
    assert!(took < ANSWERED_WITHIN, "{what} answered after {took:?}");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert_retry_after(what, &resp);
    assert_oauth_error(
        resp,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
}

fn assert_retry_after(what: &str, resp: &Response) {
    let seconds = resp
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("{what}: a 503 without Retry-After"))
        .to_str()
        .unwrap();
    assert!(
        seconds.parse::<u32>().is_ok(),
        "{what}: Retry-After {seconds}"
    );
}

/// Repeats `request` until it answers `wanted`, for at most [`BACK_WITHIN`];
/// meanwhile only `503` is an acceptable answer. Returns the wanted answer.
async fn eventually<F, Fut>(what: &str, wanted: StatusCode, request: F) -> Response
where
    F: Fn() -> Fut,
    Fut: Future<Output = Response>,
{
    let start = Instant::now();
    loop {
        let (resp, _) = timed(request()).await;
        if resp.status() == wanted {
            return resp;
        }
        assert_eq!(
            resp.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{what} while the instance comes back"
        );
        assert!(
            start.elapsed() < BACK_WITHIN,
            "{what} still {} after {BACK_WITHIN:?}",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clients listing and creating todos on an instance all along, so that the
/// cut finds statements in flight, as it would on a busy server: those are
/// the ones that wait for an answer that never comes.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(app: &TestApp, token: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..clients)
            .map(|i| {
                let (stop, answers) = (Arc::clone(&stop), Arc::clone(&answers));
                let (client, base, token) = (Client::new(), app.base.clone(), token.to_owned());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let request = if n % 2 == 0 {
                            client.get(format!("{base}/todos"))
                        } else {
                            client
                                .post(format!("{base}/todos"))
                                .json(&json!({ "title": format!("load {i}.{n}") }))
                        };
                        let sent = Instant::now();
                        let resp = request
                            .bearer_auth(&token)
                            .timeout(HUNG)
                            .send()
                            .await
                            .expect("answered, not hung");
                        answers.lock().unwrap().push(Answer {
                            at: Instant::now(),
                            took: sent.elapsed(),
                            status: resp.status(),
                        });
                        n += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            answers,
            clients,
        }
    }

    /// Stops the clients and returns every answer they had.
    async fn stop(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.expect("a load client");
        }
        let answers = self.answers.lock().unwrap();
        answers.clone()
    }
}

#[derive(Debug, Clone, Copy)]
struct Answer {
    at: Instant,
    took: Duration,
    status: StatusCode,
}

async fn sign_out(app: &TestApp, token: &str) -> Response {
    app.request(Method::POST, "/me/sign-out", Some(token))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_instance_cut_off_from_postgres_answers_503_promptly_and_serves_again_after_the_heal_knowing_what_was_revoked(
) {
    if skipped_unless(
        Backend::Postgres,
        "the cut is between an instance and a database server",
    ) {
        return;
    }
    // Arrange: ada has a key whose tokens will be revoked and one that is
    // kept; bob will sign out. The tokens are minted at b.
    let Pair { a, b, proxy } = pair().await;
    let ada = TestUser::generate().register(&b).await;
    let ada_login = ada.login(&b).await;
    let doomed = b.create_key(&ada_login, json!({ "name": "doomed" })).await;
    let kept = b.create_key(&ada_login, json!({ "name": "kept" })).await;
    let doomed_token = b.exchange(&doomed).await;
    let bob = TestUser::generate().register(&b).await;
    let bob_login = bob.login(&b).await;
    b.create_todo(&ada_login, "before the cut").await;
    let load = Load::start(&b, &ada_login, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Act: cut b off, and meanwhile revoke at a.
    proxy.cut();
    let cut_at = Instant::now();
    let doomed_path = format!("/keys/{}", doomed.id);
    let (me, list, create, key, exchange, login, ready, revoked, signed_out) = tokio::join!(
        timed(b.get(&doomed_token, "/me")),
        timed(b.get(&ada_login, "/todos")),
        timed(b.post(&ada_login, "/todos", json!({ "title": "during" }))),
        timed(b.create_key_response(&ada_login, json!({ "name": "during" }))),
        timed(b.exchange_response(&kept.id, &kept.key)),
        timed(b.login_response(&ada.email, &ada.password)),
        timed(b.get_public("/ready")),
        a.delete(&ada_login, &doomed_path),
        sign_out(&a, &bob_login),
    );

    // Assert: b verifies and refuses the rest promptly.
    let slowest = [&list, &create, &key, &exchange, &login, &ready]
        .iter()
        .map(|(_, took)| *took)
        .max();
    eprintln!("the slowest 503 during the cut took {slowest:?}");
    assert_eq!(
        me.0.status(),
        StatusCode::OK,
        "verification needs no database"
    );
    assert!(me.1 < ANSWERED_WITHIN, "verification took {:?}", me.1);
    assert_unavailable("GET /todos", list).await;
    assert_unavailable("POST /todos", create).await;
    assert_unavailable("POST /keys", key).await;
    assert_temporarily_unavailable("an exchange", exchange).await;
    assert_temporarily_unavailable("a login", login).await;
    assert_unavailable("GET /ready", ready).await;
    // a took both revocations at once; b cannot know of them yet.
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    assert_revoked(a.get(&doomed_token, "/me").await).await;
    assert_revoked(a.get(&bob_login, "/me").await).await;
    assert_eq!(b.get(&doomed_token, "/me").await.status(), StatusCode::OK);
    assert_eq!(b.get(&bob_login, "/me").await.status(), StatusCode::OK);
    tokio::time::sleep(CUT_FOR.saturating_sub(cut_at.elapsed())).await;
    // b holds the doomed key's record from its exchange before the cut, but
    // has not heard from the database for longer than a cached record may
    // serve: it may have missed the revocation, so it asks the database.
    assert!(
        b.revocations.lag() >= FRESH_FOR,
        "{:?}",
        b.revocations.lag()
    );
    assert_temporarily_unavailable(
        "an exchange of a cached key once the feed is stale",
        timed(b.exchange_response(&doomed.id, &doomed.key)).await,
    )
    .await;

    // Act: heal.
    proxy.heal();
    let healed = Instant::now();

    // Assert: b learns the revocations and serves again, as it is.
    let (key_revoked, signed_out) = tokio::join!(
        refused_within(&b, &doomed_token, BACK_WITHIN),
        refused_within(&b, &bob_login, BACK_WITHIN)
    );
    eprintln!("revocations learned {key_revoked:?} and {signed_out:?} after the heal");
    eventually("GET /todos", StatusCode::OK, || b.get(&ada_login, "/todos")).await;
    eventually("POST /todos", StatusCode::CREATED, || {
        b.post(&ada_login, "/todos", json!({ "title": "after" }))
    })
    .await;
    eventually("POST /keys", StatusCode::CREATED, || {
        b.create_key_response(&ada_login, json!({ "name": "after" }))
    })
    .await;
    eventually("an exchange", StatusCode::OK, || {
        b.exchange_response(&kept.id, &kept.key)
    })
    .await;
    eventually("a login", StatusCode::OK, || {
        b.login_response(&ada.email, &ada.password)
    })
    .await;
    eventually("GET /ready", StatusCode::OK, || b.get_public("/ready")).await;
    let refused = b.exchange_response(&doomed.id, &doomed.key).await;
    assert_oauth_error(refused, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let answers = load.stop().await;
    for answer in &answers {
        assert!(
            matches!(
                answer.status,
                StatusCode::OK | StatusCode::CREATED | StatusCode::SERVICE_UNAVAILABLE
            ) && answer.took < ANSWERED_WITHIN,
            "a load request was answered {} after {:?}",
            answer.status,
            answer.took
        );
    }
    assert!(
        answers
            .iter()
            .any(|a| a.at > cut_at && a.at < healed && a.status == StatusCode::SERVICE_UNAVAILABLE),
        "the load felt the cut: {answers:?}"
    );
    assert!(
        answers
            .iter()
            .any(|a| a.at > healed && a.status.is_success()),
        "the load is served after the heal: {answers:?}"
    );
}

#[tokio::test]
async fn an_instance_whose_postgres_connections_are_reset_answers_503_promptly_and_serves_again() {
    if skipped_unless(
        Backend::Postgres,
        "the reset is between an instance and a database server",
    ) {
        return;
    }
    // Arrange
    let Pair { a: _a, b, proxy } = pair().await;
    let ada = TestUser::generate().register(&b).await;
    let login = ada.login(&b).await;
    let key: TestKey = b.create_key(&login, json!({ "name": "ci" })).await;
    let unseen: TestKey = b.create_key(&login, json!({ "name": "unseen" })).await;
    let token = b.exchange(&key).await;

    // Act
    proxy.reset();
    let (me, list, create, cached, exchange, ready) = tokio::join!(
        timed(b.get(&token, "/me")),
        timed(b.get(&login, "/todos")),
        timed(b.post(&login, "/todos", json!({ "title": "refused" }))),
        timed(b.exchange_response(&key.id, &key.key)),
        timed(b.exchange_response(&unseen.id, &unseen.key)),
        timed(b.get_public("/ready")),
    );
    proxy.heal();

    // Assert: the key exchanged before is served from memory while the feed
    // is fresh; one never seen needs the database.
    assert_eq!(me.0.status(), StatusCode::OK);
    assert_unavailable("GET /todos", list).await;
    assert_unavailable("POST /todos", create).await;
    assert_eq!(cached.0.status(), StatusCode::OK, "a cached key");
    assert_temporarily_unavailable("an exchange", exchange).await;
    assert_unavailable("GET /ready", ready).await;
    eventually("GET /todos", StatusCode::OK, || b.get(&login, "/todos")).await;
    eventually("an exchange", StatusCode::OK, || {
        b.exchange_response(&key.id, &key.key)
    })
    .await;
}

#[tokio::test]
async fn a_key_revoked_while_an_instance_was_cut_off_is_refused_there_even_once_the_change_left_the_feed(
) {
    if skipped_unless(
        Backend::Postgres,
        "the cut is between an instance and a database server",
    ) {
        return;
    }
    // Arrange: one-second tokens, so that a change stays in the feed only
    // that long plus the leeway; b caches the key.
    let Pair { a, b, proxy } = pair_with(|c| c.token_ttl = Duration::from_secs(1)).await;
    let ada = TestUser::generate().register(&a).await;
    let login = ada.login(&a).await;
    let key = a.create_key(&login, json!({ "name": "leaked" })).await;
    b.exchange(&key).await;
    let lifetime = Duration::from_millis(u64::try_from(a.revocations.lifetime()).unwrap());

    // Act: cut b off; revoke at a; wait until the change has left the feed
    // (what a reload reads), then heal.
    proxy.cut();
    let revoked = a.delete(&login, &format!("/keys/{}", key.id)).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(lifetime + Duration::from_millis(1500)).await;
    assert_eq!(a.revocations.len(), 0, "the change has left a's window too");
    proxy.heal();

    // Assert: b never hears of the revocation, yet once its feed is fresh
    // again its cached record is gone, so the key is refused.
    let resp = eventually("an exchange", StatusCode::UNAUTHORIZED, || {
        b.exchange_response(&key.id, &key.key)
    })
    .await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
}
