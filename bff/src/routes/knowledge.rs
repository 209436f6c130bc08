//! Dana's own file API, with real HTTP statuses:
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/knowledge/files` | multipart/form-data: optional `agent_id`, `metadata` (a JSON object) and `file_name` fields, then the file in `file`; 201 with the row |
//! | `GET /api/knowledge/files?limit=&offset=` | `{"files": [...], "next_offset": n or null}`, newest first |
//! | `GET /api/knowledge/files/{id}` | the row |
//! | `GET /api/knowledge/files/{id}/content` | the bytes (`Range` → 206/416, `ETag`, `Content-Disposition`); `?redirect=1` → 302 to a presigned URL valid for a minute |
//! | `DELETE /api/knowledge/files/{id}` | 204; the object and the row are both gone |
//!
//! Every row is read and written as the caller (their claims, so RLS decides).

use crate::app::App;
use crate::auth;
use crate::body::{json_response, Body, BoxError};
use crate::error::ApiError;
use crate::knowledge::{KnowledgeError, Lookup, Target, Upload, User};
use bytes::Bytes;
use dana_storage::keys;
use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// Fields besides the file, and the multipart framing around it, may add this much to a body.
const FORM_OVERHEAD: u64 = 64 * 1024;
/// How long a `?redirect=1` URL works.
const REDIRECT_TTL: Duration = Duration::from_secs(60);

pub async fn route(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let caller = auth::identify(app, request.headers()).await?;
    let user = User::from_claims(&caller.claims).ok_or(KnowledgeError::NotSignedIn)?;
    let rest = request
        .uri()
        .path()
        .strip_prefix("/api/knowledge/files")
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (request.method().clone(), segments.as_slice()) {
        (Method::POST, []) => upload(app, &user, request).await,
        (Method::GET, []) => list(app, &user, request.uri().query()).await,
        (Method::GET, [id]) => {
            let row = app.knowledge.find_any(&user, parse_id(id)?).await?;
            Ok(json_response(StatusCode::OK, &row.json))
        }
        (Method::GET | Method::HEAD, [id, "content"]) => {
            let row = app.knowledge.find(&user, Lookup::Id(parse_id(id)?)).await?;
            if query_flag(request.uri().query(), "redirect") {
                let url = app.knowledge.presign(&row, REDIRECT_TTL).await?;
                let mut response = Response::new(crate::body::full(""));
                *response.status_mut() = StatusCode::FOUND;
                response.headers_mut().insert(
                    header::LOCATION,
                    HeaderValue::from_str(&url).map_err(|e| ApiError::Internal(e.to_string()))?,
                );
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return Ok(response);
            }
            download(
                app,
                &row,
                request.headers(),
                true,
                request.method() == Method::HEAD,
            )
            .await
        }
        (Method::DELETE, [id]) => {
            let row = app.knowledge.find_any(&user, parse_id(id)?).await?;
            app.knowledge.delete(&user, &row).await?;
            let mut response = Response::new(crate::body::full(""));
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        _ => Err(ApiError::NotFound(request.uri().path().to_owned())),
    }
}

fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::Knowledge(KnowledgeError::NotFound))
}

fn query_flag(query: Option<&str>, name: &str) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .any(|(key, value)| key == name && matches!(value, "1" | "true" | ""))
}

fn query_number(query: Option<&str>, name: &str) -> Option<i64> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
}

async fn list(app: &App, user: &User, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let limit = query_number(query, "limit").unwrap_or(50).clamp(1, 200);
    let offset = query_number(query, "offset").unwrap_or(0).max(0);
    // One more than asked tells whether there is a next page.
    let mut rows = app.knowledge.page(user, limit + 1, offset).await?;
    let next_offset = (rows.len() as i64 > limit).then_some(offset + limit);
    rows.truncate(limit as usize);
    let files: Vec<&Value> = rows.iter().map(|r| &r.json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"files": files, "next_offset": next_offset}),
    ))
}

/// The declared body length, when over the file limit plus the form's own bytes: refused at once.
pub fn refuse_declared_oversize(
    app: &App,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Incoming, ApiError> {
    let limit = app.knowledge.limits.max_file_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit + FORM_OVERHEAD) {
        tokio::spawn(crate::body_limit::drain_unshared(body));
        return Err(ApiError::Knowledge(KnowledgeError::TooLarge { limit }));
    }
    Ok(body)
}

async fn upload(
    app: &App,
    user: &User,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    app.knowledge.store()?;
    let (parts, body) = request.into_parts();
    let body = refuse_declared_oversize(app, &parts.headers, body)?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        KnowledgeError::BadBody("send multipart/form-data with the file in the field `file`".into())
    })?;
    let limit = app.knowledge.limits.max_file_bytes;
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(limit + FORM_OVERHEAD)
            .per_field(limit + 1),
    );
    let mut form = multer::Multipart::with_constraints(body_bytes(body), boundary, constraints);
    let form_error = |error: multer::Error| form_error(error, limit);
    let mut agent_id = None;
    let mut metadata = json!({});
    let mut name_override = None;
    while let Some(mut field) = form.next_field().await.map_err(form_error)? {
        match field.name().unwrap_or("") {
            "agent_id" => {
                let text = small_field(field).await?;
                agent_id = Some(Uuid::parse_str(text.trim()).map_err(|_| {
                    KnowledgeError::Invalid(format!("agent_id {text:?} is not a uuid"))
                })?);
            }
            "metadata" => {
                let text = small_field(field).await?;
                metadata = match serde_json::from_str::<Value>(&text) {
                    Ok(object @ Value::Object(_)) => object,
                    _ => {
                        return Err(KnowledgeError::Invalid(
                            "metadata must be a JSON object".into(),
                        )
                        .into())
                    }
                };
            }
            "file_name" => name_override = Some(small_field(field).await?),
            "file" => {
                let original = name_override
                    .clone()
                    .or_else(|| field.file_name().map(str::to_owned))
                    .unwrap_or_default();
                let file_name = keys::display_name(&original);
                let content_type =
                    type_of(field.content_type().map(|m| m.essence_str()), &file_name);
                let upload = Upload {
                    target: Target::New,
                    file_name,
                    content_type,
                    cache_control: None,
                    agent_id,
                    metadata: metadata.clone(),
                };
                let row = app.knowledge.upload(user, upload, &mut field).await?;
                drop(field);
                // Whatever follows the file is not part of it; a field the row needed should
                // have come first. Either way the stored file does not outlive a refused request.
                let refusal = match form.next_field().await {
                    Ok(None) => None,
                    Ok(Some(late)) => Some(ApiError::from(KnowledgeError::BadBody(format!(
                        "the field {:?} came after the file: send agent_id, metadata and file_name before it",
                        late.name().unwrap_or("")
                    )))),
                    Err(e) => Some(form_error(e)),
                };
                if let Some(refusal) = refusal {
                    app.knowledge.delete(user, &row).await?;
                    return Err(refusal);
                }
                return Ok(json_response(StatusCode::CREATED, &row.json));
            }
            other => {
                return Err(KnowledgeError::BadBody(format!(
                    "unknown field {other:?}: the form takes agent_id, metadata, file_name and file"
                ))
                .into())
            }
        }
    }
    Err(KnowledgeError::BadBody("no field `file` in the form".into()).into())
}

/// The type to store a file as: what the client declared, or (for none or a generic one) what
/// its extension says.
pub fn type_of(declared: Option<&str>, file_name: &str) -> String {
    match declared {
        Some(t) if !t.is_empty() && t != "application/octet-stream" => t.to_ascii_lowercase(),
        _ => mime_guess::from_path(file_name)
            .first_raw()
            .unwrap_or("application/octet-stream")
            .to_owned(),
    }
}

async fn small_field(field: multer::Field<'_>) -> Result<String, ApiError> {
    let bytes = field
        .bytes()
        .await
        .map_err(|e| KnowledgeError::BadBody(e.to_string()))?;
    if bytes.len() > 16 * 1024 {
        return Err(KnowledgeError::BadBody(
            "form fields other than the file are limited to 16 KiB".into(),
        )
        .into());
    }
    String::from_utf8(bytes.to_vec())
        .map_err(|_| KnowledgeError::BadBody("form fields must be UTF-8 text".into()).into())
}

fn form_error(error: multer::Error, limit: u64) -> ApiError {
    match error {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            KnowledgeError::TooLarge { limit }.into()
        }
        other => KnowledgeError::BadBody(other.to_string()).into(),
    }
}

/// The request body as a stream of bytes (trailers dropped).
pub fn body_bytes(
    body: Incoming,
) -> impl futures_util::Stream<Item = Result<Bytes, BoxError>> + Send + Unpin {
    TryStreamExt::map_err(BodyStream::new(body), BoxError::from)
        .try_filter_map(|frame| std::future::ready(Ok(frame.into_data().ok())))
}

/// Streams a stored file (or the asked range of it) with its validators. `attachment` adds a
/// `Content-Disposition` with the file's name made safe.
pub async fn download(
    app: &App,
    row: &crate::knowledge::rows::FileRow,
    headers: &HeaderMap,
    attachment: bool,
    head_only: bool,
) -> Result<Response<Body>, ApiError> {
    let e_tag = row.e_tag();
    if let (Some(tag), Some(sent)) = (&e_tag, headers.get(header::IF_NONE_MATCH)) {
        if sent
            .to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
        {
            let mut response = Response::new(crate::body::full(""));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
                .headers_mut()
                .insert(header::ETAG, HeaderValue::from_str(tag).expect("hex ETag"));
            return Ok(response);
        }
    }
    let size = row.size_bytes.unwrap_or(0).max(0) as u64;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(value) => match http_range_header::parse_range_header(value) {
            // Unparseable ranges are ignored (RFC 9110 §14.2): the whole file is sent.
            Err(_) => None,
            Ok(parsed) => match parsed.validate(size) {
                Err(_) => return Err(ApiError::RangeNotSatisfiable { size }),
                // One range is served; several are answered with the whole file.
                Ok(ranges) if ranges.len() == 1 => Some(ranges[0].clone()),
                Ok(_) => None,
            },
        },
    };
    let range_header = range
        .as_ref()
        .map(|r| format!("bytes={}-{}", r.start(), r.end()));
    let opened = app.knowledge.open(row, range_header.as_deref()).await?;
    let mut response = if head_only {
        Response::new(crate::body::full(""))
    } else {
        let content_length = opened.content_length;
        let stream = opened
            .into_stream()
            .map(|chunk| chunk.map(Frame::data).map_err(BoxError::from));
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, content_length.into());
        response
    };
    if let Some(r) = &range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start(), r.end()))
                .expect("digits"),
        );
    }
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&row.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Stored files are private: a shared cache must never keep one.
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(tag) = e_tag {
        out.insert(header::ETAG, HeaderValue::from_str(&tag).expect("hex ETag"));
    }
    if attachment {
        out.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&keys::content_disposition(&row.file_name)).expect("encoded"),
        );
    }
    Ok(response)
}
