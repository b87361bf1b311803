use std::sync::{atomic::Ordering, Arc};

use poem::web::Data;
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::{
    error::Error,
    http::documented::{documented, Failure},
    state::AppState,
};

#[derive(Default)]
pub struct HealthApi;

#[derive(Debug, Object)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The process is up.
    #[oai(status = 200)]
    Ok(Json<Status>),
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database answers; the server can take traffic.
    #[oai(status = 200)]
    Ok(Json<Status>),
}

documented! {
    ReadyErrors {
        503 => "The database does not answer, or the server is shutting down."
    }
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness
    ///
    /// `200` while the process is up; touches nothing else.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Status {
            status: "ok".into(),
        }))
    }

    /// Readiness
    ///
    /// `200` when the database answers a query; `503` when it does not, and
    /// from the moment shutdown begins, so a load balancer stops sending
    /// requests while the last ones finish.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(
        &self,
        state: Data<&Arc<AppState>>,
    ) -> Result<ReadyResponse, Failure<ReadyErrors>> {
        if state.draining.load(Ordering::Relaxed) {
            return Err(Error::Unavailable("The server is shutting down").into());
        }
        match state.db.ping().await {
            Ok(()) => Ok(ReadyResponse::Ok(Json(Status {
                status: "ready".into(),
            }))),
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed");
                Err(Error::Unavailable("The database does not answer").into())
            }
        }
    }
}
