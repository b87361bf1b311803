use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};
use uuid::Uuid;

use super::ApiTags;
use crate::{
    db,
    domain::{
        pages::{page_params, paginate},
        scopes::Scope,
        todos::TodoTitle,
    },
    error::Error,
    http::{
        auth::Auth,
        documented::{documented, Failure},
        fields, types,
    },
    state::AppState,
};

#[derive(Default)]
pub struct TodosApi;

#[derive(Debug, Object)]
pub struct Todo {
    pub id: Uuid,
    pub title: String,
    pub completed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<db::todos::Todo> for Todo {
    fn from(t: db::todos::Todo) -> Self {
        Todo {
            id: t.id,
            title: t.title,
            completed: t.completed,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Object)]
pub struct NewTodo {
    /// 1 to 500 characters after trimming, with no control character (such as a newline or a tab) inside.
    #[oai(deserialize_with = "fields::title")]
    pub title: String,
    /// Defaults to false.
    #[oai(deserialize_with = "fields::completed")]
    pub completed: Option<bool>,
}

#[derive(Debug, Object)]
pub struct TodoPatch {
    /// 1 to 500 characters after trimming, with no control character (such as a newline or a tab) inside.
    #[oai(deserialize_with = "fields::optional_title")]
    pub title: Option<String>,
    #[oai(deserialize_with = "fields::completed")]
    pub completed: Option<bool>,
}

#[derive(Debug, Object)]
pub struct TodoPage {
    /// Oldest first.
    pub items: Vec<Todo>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum ListTodosResponse {
    /// A page of your todos.
    #[oai(status = 200)]
    Ok(Json<TodoPage>),
}

#[derive(ApiResponse)]
pub enum CreateTodoResponse {
    /// The todo was created; `Location` is its URL.
    #[oai(status = 201)]
    Created(Json<Todo>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum TodoResponse {
    /// The todo.
    #[oai(status = 200)]
    Ok(Json<Todo>),
}

#[derive(ApiResponse)]
pub enum DeleteTodoResponse {
    /// The todo was deleted.
    #[oai(status = 204)]
    Deleted,
}

documented! {
    ListTodosErrors {
        400 => "A query parameter is not of its documented type.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `todos:read` scope.",
        422 => "`limit` is out of range or `cursor` is not one this API gave out.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
    CreateTodoErrors {
        400 => "The body is not JSON of the documented shape.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `todos:write` scope.",
        409 => "The account already holds as many todos as the server allows (`--max-todos-per-user`); delete one first.",
        422 => "The title is empty, too long or holds a control character.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
    GetTodoErrors {
        400 => "The id is not a UUID.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `todos:read` scope.",
        404 => "You have no todo with this id.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
    UpdateTodoErrors {
        400 => "The id is not a UUID or the body is not JSON of the documented shape.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `todos:write` scope.",
        404 => "You have no todo with this id.",
        422 => "The title is empty, too long or holds a control character.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
    DeleteTodoErrors {
        400 => "The id is not a UUID.",
        401 => "No bearer token, or an invalid, expired or revoked one.",
        403 => "The token lacks the `todos:write` scope.",
        404 => "You have no todo with this id.",
        500 => "The server failed; the error has been logged.",
        503 => "The database cannot take the request now (a full disk, an I/O error); nothing was changed. Try again after `Retry-After` seconds."
    }
}

const NO_SUCH_TODO: Error =
    Error::NotFound(std::borrow::Cow::Borrowed("You have no todo with this id"));

#[OpenApi(tag = "ApiTags::Todos")]
impl TodosApi {
    /// List your todos
    ///
    /// Oldest first, `limit` (1 to 100, default 20) at a time; follow
    /// `next_cursor` for more. Needs `todos:read`.
    #[oai(path = "/todos", method = "get", operation_id = "listTodos")]
    async fn list_todos(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        /// Only completed (`true`) or open (`false`) todos.
        completed: Query<Option<bool>>,
        /// Page size, 1 to 100.
        #[oai(default = "types::page_size")]
        limit: Query<Option<i64>>,
        /// `next_cursor` from the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<ListTodosResponse, Failure<ListTodosErrors>> {
        let claims = auth.require(Scope::TodosRead)?;
        let (limit, cursor) = page_params(limit.0, cursor.0.as_deref())?;
        let rows = db::todos::list(
            &state.db,
            claims.user_id,
            completed.0,
            cursor.map(|c| c.0),
            limit.get(),
        )
        .await?;
        let (rows, next_cursor) = paginate(rows, limit, |t| t.id);
        Ok(ListTodosResponse::Ok(Json(TodoPage {
            items: rows.into_iter().map(Todo::from).collect(),
            next_cursor,
        })))
    }

    /// Create a todo
    ///
    /// An account holds at most `--max-todos-per-user` todos. Needs `todos:write`.
    #[oai(path = "/todos", method = "post", operation_id = "createTodo")]
    async fn create_todo(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        body: Json<NewTodo>,
    ) -> Result<CreateTodoResponse, Failure<CreateTodoErrors>> {
        let claims = auth.require(Scope::TodosWrite)?;
        let title = TodoTitle::parse(&body.title).map_err(|m| Error::invalid("title", m))?;
        let max = state.limits.max_todos_per_user;
        let todo = db::todos::insert(
            &state.db,
            claims.user_id,
            &title.into_inner(),
            body.completed.unwrap_or(false),
            max,
        )
        .await?
        .ok_or_else(|| {
            Error::Conflict(format!(
                "This account already holds {max} todos, the most one account may hold on this \
                 server (--max-todos-per-user {max}); delete one it no longer needs, then try again"
            ))
        })?;
        let location = format!("/todos/{}", todo.id);
        Ok(CreateTodoResponse::Created(Json(todo.into()), location))
    }

    /// Get a todo
    ///
    /// Needs `todos:read`.
    #[oai(path = "/todos/:id", method = "get", operation_id = "getTodo")]
    async fn get_todo(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<TodoResponse, Failure<GetTodoErrors>> {
        let claims = auth.require(Scope::TodosRead)?;
        let todo = db::todos::get(&state.db, claims.user_id, id.0)
            .await?
            .ok_or(NO_SUCH_TODO)?;
        Ok(TodoResponse::Ok(Json(todo.into())))
    }

    /// Update a todo
    ///
    /// Changes only the fields sent. Needs `todos:write`.
    #[oai(path = "/todos/:id", method = "patch", operation_id = "updateTodo")]
    async fn update_todo(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<TodoPatch>,
    ) -> Result<TodoResponse, Failure<UpdateTodoErrors>> {
        let claims = auth.require(Scope::TodosWrite)?;
        let title = body
            .title
            .as_deref()
            .map(TodoTitle::parse)
            .transpose()
            .map_err(|m| Error::invalid("title", m))?;
        let todo = db::todos::update(
            &state.db,
            claims.user_id,
            id.0,
            title.map(TodoTitle::into_inner).as_deref(),
            body.completed,
        )
        .await?
        .ok_or(NO_SUCH_TODO)?;
        Ok(TodoResponse::Ok(Json(todo.into())))
    }

    /// Delete a todo
    ///
    /// Needs `todos:write`.
    #[oai(path = "/todos/:id", method = "delete", operation_id = "deleteTodo")]
    async fn delete_todo(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<Uuid>,
    ) -> Result<DeleteTodoResponse, Failure<DeleteTodoErrors>> {
        let claims = auth.require(Scope::TodosWrite)?;
        if db::todos::delete(&state.db, claims.user_id, id.0).await? {
            Ok(DeleteTodoResponse::Deleted)
        } else {
            Err(NO_SUCH_TODO.into())
        }
    }
}
