//! Browser apps on the origins `--cors-origins` lists call the API: their
//! preflights are granted before routing, and every answer they get (errors
//! included) lets their script read it; other origins get no grant.

use latchkey::http::cors::Origin;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, header, holder, spawn_app, spawn_app_with, TestApp};

const APP: &str = "https://app.example.test";
const OTHER_APP: &str = "http://localhost:3000";
const STRANGER: &str = "https://evil.example.test";

async fn spawn_app_for_browsers() -> TestApp {
    spawn_app_with(|c| {
        c.cors_origins = [APP, OTHER_APP].map(|o| Origin::parse(o).unwrap()).to_vec();
        c.limits.key_failures_per_minute = 1;
    })
    .await
}

/// Every `Vary` value of the answer, lower-cased.
fn vary(resp: &Response) -> Vec<String> {
    resp.headers()
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

/// A header's comma-separated list, lower-cased.
fn list(resp: &Response, name: &str) -> Vec<String> {
    header(resp, name)
        .unwrap_or_else(|| panic!("no {name}"))
        .split(',')
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> RequestBuilder {
    app.request(Method::OPTIONS, path, None)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-request-id",
        )
}

/// The grant a listed origin's answers carry, whatever their status.
fn assert_granted(resp: &Response, origin: &str, what: &str) {
    assert_eq!(
        header(resp, "access-control-allow-origin"),
        Some(origin),
        "{what}"
    );
    assert_eq!(
        list(resp, "access-control-expose-headers"),
        [
            "location",
            "retry-after",
            "www-authenticate",
            "x-request-id"
        ],
        "{what}"
    );
    assert_eq!(
        header(resp, "access-control-allow-credentials"),
        None,
        "{what}"
    );
    assert!(vary(resp).contains(&"origin".into()), "{what}");
}

fn assert_no_grant(resp: &Response, what: &str) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-allow-credentials",
    ] {
        assert_eq!(header(resp, name), None, "{what}: {name}");
    }
}

#[tokio::test]
async fn a_listed_origin_s_preflight_is_granted_before_any_route_is_looked_up() {
    // Arrange
    let app = spawn_app_for_browsers().await;

    // Act: the token endpoint, an operation with an id, and no route at all.
    let answers = [
        preflight(&app, "/auth/token", APP, "POST"),
        preflight(
            &app,
            "/todos/01890a5d-ac96-774b-bcce-b302099a8057",
            OTHER_APP,
            "PATCH",
        ),
        preflight(&app, "/no-such-route", APP, "DELETE"),
    ];

    // Assert
    for (request, origin) in answers.into_iter().zip([APP, OTHER_APP, APP]) {
        let resp = request.send().await.unwrap();
        let what = resp.url().path().to_owned();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{what}");
        assert_eq!(
            header(&resp, "access-control-allow-origin"),
            Some(origin),
            "{what}"
        );
        assert_eq!(
            list(&resp, "access-control-allow-methods"),
            ["get", "post", "put", "patch", "delete"]
        );
        let allowed = list(&resp, "access-control-allow-headers");
        for name in ["authorization", "content-type", "x-request-id"] {
            assert!(allowed.contains(&name.into()), "{what}: {allowed:?}");
        }
        assert_eq!(header(&resp, "access-control-max-age"), Some("3600"));
        assert_eq!(header(&resp, "access-control-allow-credentials"), None);
        assert!(vary(&resp).contains(&"origin".into()), "{what}");
        assert_eq!(header(&resp, "x-content-type-options"), Some("nosniff"));
        assert!(resp.bytes().await.unwrap().is_empty(), "{what}");
    }
}

#[tokio::test]
async fn an_unlisted_origin_s_preflight_is_refused_with_no_grant() {
    // Arrange
    let app = spawn_app_for_browsers().await;

    // Act
    let resp = preflight(&app, "/auth/token", STRANGER, "POST")
        .send()
        .await
        .unwrap();

    // Assert
    assert_no_grant(&resp, "the preflight");
    assert!(vary(&resp).contains(&"origin".into()));
    let problem = assert_problem(resp, StatusCode::FORBIDDEN).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("--cors-origins"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_listed_origin_can_read_every_answer_errors_included() {
    // Arrange
    let app = spawn_app_for_browsers().await;
    let holder = holder(&app).await;
    let from = |request: RequestBuilder| request.header("origin", APP).send();

    // Act
    let token = app
        .exchange_form(&holder.key.id, &holder.key.key)
        .header("origin", APP)
        .send()
        .await;
    let answers = [
        ("a token", StatusCode::OK, token),
        (
            "a list",
            StatusCode::OK,
            from(app.request(Method::GET, "/todos", Some(&holder.from_key)))
                .await
                .unwrap(),
        ),
        (
            "a creation",
            StatusCode::CREATED,
            from(
                app.request(Method::POST, "/todos", Some(&holder.from_key))
                    .json(&json!({ "title": "from the browser" })),
            )
            .await
            .unwrap(),
        ),
        (
            "a missing token",
            StatusCode::UNAUTHORIZED,
            from(app.request(Method::GET, "/todos", None))
                .await
                .unwrap(),
        ),
        (
            "an unknown route",
            StatusCode::NOT_FOUND,
            from(app.request(Method::GET, "/no-such-route", None))
                .await
                .unwrap(),
        ),
        (
            "a bad key",
            StatusCode::UNAUTHORIZED,
            from(app.request(Method::POST, "/auth/token", None).form(&[
                ("grant_type", "client_credentials"),
                ("client_secret", "lk_x"),
            ]))
            .await
            .unwrap(),
        ),
        (
            "a throttled client",
            StatusCode::TOO_MANY_REQUESTS,
            from(app.request(Method::POST, "/auth/token", None).form(&[
                ("grant_type", "client_credentials"),
                ("client_secret", "lk_x"),
            ]))
            .await
            .unwrap(),
        ),
    ];

    // Assert
    for (what, status, resp) in &answers {
        assert_eq!(resp.status(), *status, "{what}");
        assert_granted(resp, APP, what);
    }
    let [_, _, (_, _, created), (_, _, missing), _, _, (_, _, throttled)] = &answers;
    assert!(header(created, "location").is_some());
    assert!(header(missing, "www-authenticate").is_some());
    assert!(header(throttled, "retry-after").is_some());
}

#[tokio::test]
async fn answers_to_other_origins_carry_no_grant_but_vary_on_origin() {
    // Arrange
    let app = spawn_app_for_browsers().await;

    // Act: a page elsewhere, and a client that sends no Origin (curl, or a
    // same-origin GET): both answered as usual, the browser alone withholds
    // the first from its page.
    let stranger = app
        .request(Method::GET, "/health", None)
        .header("origin", STRANGER)
        .send()
        .await
        .unwrap();
    let no_origin = app.get_public("/health").await;

    // Assert
    for (what, resp) in [("another origin", &stranger), ("no origin", &no_origin)] {
        assert_eq!(resp.status(), StatusCode::OK, "{what}");
        assert_no_grant(resp, what);
        assert!(vary(resp).contains(&"origin".into()), "{what}");
    }
}

#[tokio::test]
async fn without_cors_origins_no_origin_is_granted_and_nothing_varies_on_it() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let preflight = preflight(&app, "/auth/token", APP, "POST")
        .send()
        .await
        .unwrap();
    let request = app
        .request(Method::GET, "/health", None)
        .header("origin", APP)
        .send()
        .await
        .unwrap();

    // Assert
    assert_no_grant(&preflight, "the preflight");
    assert_no_grant(&request, "the request");
    assert!(vary(&request).is_empty(), "{:?}", vary(&request));
    assert_problem(preflight, StatusCode::FORBIDDEN).await;
    assert_eq!(request.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_options_request_that_is_no_preflight_reaches_the_routes() {
    // Arrange
    let app = spawn_app_for_browsers().await;

    // Act: no Access-Control-Request-Method, so not a preflight.
    let resp = app
        .request(Method::OPTIONS, "/todos", None)
        .header("origin", APP)
        .send()
        .await
        .unwrap();

    // Assert
    assert_granted(&resp, APP, "the 405");
    assert_eq!(header(&resp, "allow"), Some("GET, POST"));
    assert_problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
}
