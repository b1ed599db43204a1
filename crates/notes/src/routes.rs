//! HTTP handlers: the tutorial's API (query-parameter form) plus the `/notes/{id}` path form.

use crate::calendar::CalendarClient;
use crate::db::{Database, Note};
use crate::error::{ApiError, NotesError};
use crate::helpers;
use crate::query::{self, MAX_DESCRIPTION_CHARS};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::BTreeMap;
use tutorial_common::http::{plain, Format};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The notes table.
    pub db: Database,
    /// The calendar service.
    pub calendar: CalendarClient,
    /// `NOTES_HELPER_DELAY_SCALE`.
    pub helper_delay_scale: f64,
}

type Reply = Result<HttpResponse, ApiError>;

/// Runs a handler body, turning its error into the client's representation.
async fn respond(
    request: &HttpRequest,
    body: impl std::future::Future<Output = Result<HttpResponse, NotesError>>,
) -> Reply {
    let format = Format::of(request);
    body.await.map_err(|e| e.respond_as(format))
}

/// ` with date MM/DD/YYYY`
const DATE_SUFFIX_CHARS: usize = " with date MM/DD/YYYY".len();

fn note_reply(format: Format, status: StatusCode, note: &Note) -> HttpResponse {
    match format {
        Format::Plain => plain(status, note.to_string()),
        Format::Json => HttpResponse::build(status).json(note),
    }
}

/// `GET /`
pub async fn index(request: HttpRequest) -> HttpResponse {
    Format::of(&request).text(StatusCode::OK, "message", "Welcome to our notes app!")
}

/// `GET /health`: 200 when the database answers, 503 otherwise.
pub async fn health(request: HttpRequest, state: web::Data<AppState>) -> Reply {
    respond(&request, async {
        state.db.ping().await?;
        Ok(Format::of(&request).text(StatusCode::OK, "status", "OK"))
    })
    .await
}

/// `GET /notes` (the list, with the tutorial's helper work) or `GET /notes?id=N`.
pub async fn get_notes(request: HttpRequest, state: web::Data<AppState>) -> Reply {
    respond(&request, async {
        match query::optional_id(request.query_string())? {
            Some(id) => get_one(&request, &state, id).await,
            None => {
                let notes = state.db.list().await?;
                helpers::long_running_process(state.helper_delay_scale).await;
                helpers::another_process(state.helper_delay_scale).await;
                let map: BTreeMap<i32, &str> = notes
                    .iter()
                    .map(|n| (n.id, n.description.as_str()))
                    .collect();
                let mut body = serde_json::to_string_pretty(&map)
                    .map_err(|e| NotesError::Internal(e.to_string()))?;
                body.push('\n');
                Ok(HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body))
            }
        }
    })
    .await
}

async fn get_one(
    request: &HttpRequest,
    state: &AppState,
    id: i32,
) -> Result<HttpResponse, NotesError> {
    let note = state.db.get(id).await?.ok_or(NotesError::NotFound(id))?;
    Ok(note_reply(Format::of(request), StatusCode::OK, &note))
}

/// `POST /notes?desc=D[&add_date=y]`
pub async fn create_note(request: HttpRequest, state: web::Data<AppState>) -> Reply {
    respond(&request, async {
        let q = request.query_string();
        let with_date = query::wants_date(q)?;
        let limit = if with_date {
            MAX_DESCRIPTION_CHARS - DATE_SUFFIX_CHARS
        } else {
            MAX_DESCRIPTION_CHARS
        };
        let mut desc = query::required_desc(q, limit)?;
        if with_date {
            helpers::another_process(state.helper_delay_scale).await;
            let date = state.calendar.date().await?;
            desc = format!("{desc} with date {date}");
        }
        let note = state.db.create(&desc).await?;
        Ok(note_reply(Format::of(&request), StatusCode::CREATED, &note))
    })
    .await
}

/// `PUT /notes?id=N&desc=D`
pub async fn update_note(request: HttpRequest, state: web::Data<AppState>) -> Reply {
    respond(&request, async {
        let id = query::required_id(request.query_string())?;
        update(&request, &state, id).await
    })
    .await
}

async fn update(
    request: &HttpRequest,
    state: &AppState,
    id: i32,
) -> Result<HttpResponse, NotesError> {
    let desc = query::required_desc(request.query_string(), MAX_DESCRIPTION_CHARS)?;
    let note = state
        .db
        .update(id, &desc)
        .await?
        .ok_or(NotesError::NotFound(id))?;
    Ok(note_reply(Format::of(request), StatusCode::OK, &note))
}

/// `DELETE /notes?id=N`
pub async fn delete_note(request: HttpRequest, state: web::Data<AppState>) -> Reply {
    respond(&request, async {
        let id = query::required_id(request.query_string())?;
        delete(&request, &state, id).await
    })
    .await
}

async fn delete(
    request: &HttpRequest,
    state: &AppState,
    id: i32,
) -> Result<HttpResponse, NotesError> {
    if !state.db.delete(id).await? {
        return Err(NotesError::NotFound(id));
    }
    Ok(match Format::of(request) {
        Format::Plain => plain(StatusCode::OK, "Deleted"),
        Format::Json => HttpResponse::Ok().json(serde_json::json!({ "id": id, "deleted": true })),
    })
}

/// `GET /notes/{id}`
pub async fn get_note_by_path(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Reply {
    respond(&request, async {
        get_one(&request, &state, query::parse_id(&path)?).await
    })
    .await
}

/// `PUT /notes/{id}?desc=D`
pub async fn update_note_by_path(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Reply {
    respond(&request, async {
        update(&request, &state, query::parse_id(&path)?).await
    })
    .await
}

/// `DELETE /notes/{id}`
pub async fn delete_note_by_path(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Reply {
    respond(&request, async {
        delete(&request, &state, query::parse_id(&path)?).await
    })
    .await
}

/// The routes, for `App::configure`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use tutorial_common::http::resource;
    cfg.service(resource("/").route(web::get().to(index)))
        .service(
            resource("/notes")
                .route(web::get().to(get_notes))
                .route(web::post().to(create_note))
                .route(web::put().to(update_note))
                .route(web::delete().to(delete_note)),
        )
        .service(
            resource("/notes/{id}")
                .route(web::get().to(get_note_by_path))
                .route(web::put().to(update_note_by_path))
                .route(web::delete().to(delete_note_by_path)),
        )
        .service(resource("/health").route(web::get().to(health)));
}
