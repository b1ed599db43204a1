//! HTTP handlers: the tutorial's API (query-parameter form) plus the `/notes/{id}` path form.
//!
//! Each handler reads what it needs (the [`Negotiated`] format, the query string, the
//! [`AppState`]), runs its body, and `respond` turns a [`NotesError`] into the status and the
//! short message the client sees, in the format it asked for.

use crate::calendar::CalendarClient;
use crate::db::{Database, Note};
use crate::error::{ApiError, NotesError};
use crate::helpers;
use crate::query::{self, MAX_DESCRIPTION_CHARS};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::{ready, Ready};
use tutorial_common::http::{plain, resource, Format, Routes};

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

/// The representation the client asked for (its `Accept` header), read once per request: an
/// extractor, so that a handler takes it as an argument.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated(pub Format);

impl FromRequest for Negotiated {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Negotiated(Format::of(request))))
    }
}

/// Runs a handler body, turning its error into the client's representation.
async fn respond(
    format: Format,
    body: impl std::future::Future<Output = Result<HttpResponse, NotesError>>,
) -> Reply {
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
pub async fn index(Negotiated(format): Negotiated) -> HttpResponse {
    format.text(StatusCode::OK, "message", "Welcome to our notes app!")
}

/// `GET /health`: 200 when the database answers, 503 otherwise.
pub async fn health(Negotiated(format): Negotiated, state: web::Data<AppState>) -> Reply {
    respond(format, async {
        state.db.ping().await?;
        Ok(format.text(StatusCode::OK, "status", "OK"))
    })
    .await
}

/// `GET /notes` (the list, with the tutorial's helper work) or `GET /notes?id=N`.
pub async fn get_notes(
    Negotiated(format): Negotiated,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Reply {
    respond(format, async {
        match query::optional_id(request.query_string())? {
            Some(id) => get_one(format, &state, id).await,
            None => {
                let notes = state.db.list().await?;
                helpers::long_running_process(state.helper_delay_scale).await;
                helpers::another_process(state.helper_delay_scale).await;
                let map: BTreeMap<i32, &str> = notes
                    .iter()
                    .map(|n| (n.id, n.description.as_str()))
                    .collect();
                let mut body = serde_json::to_string_pretty(&map)?;
                body.push('\n');
                Ok(HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body))
            }
        }
    })
    .await
}

async fn get_one(format: Format, state: &AppState, id: i32) -> Result<HttpResponse, NotesError> {
    let note = state.db.get(id).await?.ok_or(NotesError::NotFound(id))?;
    Ok(note_reply(format, StatusCode::OK, &note))
}

/// `POST /notes?desc=D[&add_date=y]`
pub async fn create_note(
    Negotiated(format): Negotiated,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Reply {
    respond(format, async {
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
        Ok(note_reply(format, StatusCode::CREATED, &note))
    })
    .await
}

/// `PUT /notes?id=N&desc=D`
pub async fn update_note(
    Negotiated(format): Negotiated,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Reply {
    respond(format, async {
        let id = query::required_id(request.query_string())?;
        update(format, request.query_string(), &state, id).await
    })
    .await
}

async fn update(
    format: Format,
    query_string: &str,
    state: &AppState,
    id: i32,
) -> Result<HttpResponse, NotesError> {
    let desc = query::required_desc(query_string, MAX_DESCRIPTION_CHARS)?;
    let note = state
        .db
        .update(id, &desc)
        .await?
        .ok_or(NotesError::NotFound(id))?;
    Ok(note_reply(format, StatusCode::OK, &note))
}

/// `DELETE /notes?id=N`
pub async fn delete_note(
    Negotiated(format): Negotiated,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Reply {
    respond(format, async {
        let id = query::required_id(request.query_string())?;
        delete(format, &state, id).await
    })
    .await
}

async fn delete(format: Format, state: &AppState, id: i32) -> Result<HttpResponse, NotesError> {
    if !state.db.delete(id).await? {
        return Err(NotesError::NotFound(id));
    }
    Ok(match format {
        Format::Plain => plain(StatusCode::OK, "Deleted"),
        Format::Json => HttpResponse::Ok().json(serde_json::json!({ "id": id, "deleted": true })),
    })
}

/// `GET /notes/{id}`
pub async fn get_note_by_path(
    Negotiated(format): Negotiated,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Reply {
    respond(format, async {
        get_one(format, &state, query::parse_id(&path)?).await
    })
    .await
}

/// `PUT /notes/{id}?desc=D`
pub async fn update_note_by_path(
    Negotiated(format): Negotiated,
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Reply {
    respond(format, async {
        update(
            format,
            request.query_string(),
            &state,
            query::parse_id(&path)?,
        )
        .await
    })
    .await
}

/// `DELETE /notes/{id}`
pub async fn delete_note_by_path(
    Negotiated(format): Negotiated,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Reply {
    respond(format, async {
        delete(format, &state, query::parse_id(&path)?).await
    })
    .await
}

/// The routes, for `App::configure` (registered through [`Routes`], so that the server span
/// knows a 405 from the start).
pub fn configure(cfg: &mut web::ServiceConfig) {
    Routes::default()
        .with(resource("/").get(index))
        .with(
            resource("/notes")
                .get(get_notes)
                .post(create_note)
                .put(update_note)
                .delete(delete_note),
        )
        .with(
            resource("/notes/{id}")
                .get(get_note_by_path)
                .put(update_note_by_path)
                .delete(delete_note_by_path),
        )
        .with(resource("/health").get(health))
        .register(cfg);
}
