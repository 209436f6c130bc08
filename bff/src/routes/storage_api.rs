//! `/storage/v1`: the part of Supabase Storage's REST API that `@supabase/storage-js` calls, for
//! the `knowledge-files` bucket, so `supabase.storage.from('knowledge-files')` pointed at the BFF
//! works unchanged. Paths, bodies and answers follow storage-js and the Storage server's own
//! routes; errors too: HTTP 400 (500s stay 500, an unavailable dependency is 503) with the
//! logical status in the body, `{"statusCode":"404","code":"NoSuchKey","error":"not_found",
//! "message":"Object not found"}`. Other buckets are `NoSuchBucket`.
//!
//! The rule Supabase projects write as a storage policy holds here: a signed-in user reads and
//! writes only under the folder named by their own user id. Every object has its
//! `knowledge_files` row, so Dana's own API sees the same files.

use crate::app::App;
use crate::auth;
use crate::body::{json_response, Body};
use crate::error::ApiError;
use crate::knowledge::rows::FileRow;
use crate::knowledge::{KnowledgeError, Lookup, Target, Upload, User};
use crate::routes::knowledge::{body_bytes, download, refuse_declared_oversize, type_of};
use base64::Engine;
use dana_storage::keys::{self, KeyError};
use dana_storage::StorageError;
use hmac::{Hmac, Mac};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// An error in Supabase Storage's shape.
pub struct StorageApiError {
    status: &'static str,
    code: &'static str,
    error: &'static str,
    message: String,
}

impl StorageApiError {
    fn new(
        status: &'static str,
        code: &'static str,
        error: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            error,
            message: message.into(),
        }
    }

    fn no_such_key() -> Self {
        Self::new("404", "NoSuchKey", "not_found", "Object not found")
    }

    fn no_such_bucket() -> Self {
        Self::new(
            "404",
            "NoSuchBucket",
            "Bucket not found",
            "Bucket not found",
        )
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new("400", "InvalidRequest", "InvalidRequest", message)
    }

    pub fn into_response(self) -> Response<Body> {
        // Supabase Storage answers 400 whatever the logical status, except for server errors.
        let http = match self.status {
            "500" => StatusCode::INTERNAL_SERVER_ERROR,
            "501" => StatusCode::NOT_IMPLEMENTED,
            "503" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = Response::new(crate::body::json(&json!({
            "statusCode": self.status,
            "code": self.code,
            "error": self.error,
            "message": self.message,
        })));
        *response.status_mut() = http;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        response
    }
}

impl From<KnowledgeError> for StorageApiError {
    fn from(error: KnowledgeError) -> Self {
        use StorageApiError as E;
        match error {
            KnowledgeError::NotConfigured => {
                E::new("501", "NotSupported", "NotSupported", error.to_string())
            }
            KnowledgeError::NotSignedIn => E::new(
                "403",
                "AccessDenied",
                "Unauthorized",
                "sign in to use storage",
            ),
            KnowledgeError::NotFound | KnowledgeError::Storage(StorageError::NotFound(_)) => {
                E::no_such_key()
            }
            KnowledgeError::AlreadyExists(_) => E::new(
                "409",
                "KeyAlreadyExists",
                "Duplicate",
                "The resource already exists",
            ),
            KnowledgeError::Busy => E::new(
                "409",
                "ResourceLocked",
                "ResourceLocked",
                "another upload of this object is under way",
            ),
            KnowledgeError::TooLarge { limit } => E::new(
                "413",
                "EntityTooLarge",
                "Payload too large",
                format!("The object exceeded the maximum allowed size ({limit} bytes)"),
            ),
            KnowledgeError::UnsupportedType(t) => E::new(
                "415",
                "InvalidMimeType",
                "invalid_mime_type",
                format!("mime type {t} is not supported"),
            ),
            KnowledgeError::BadKey(KeyError::Invalid(key)) => E::new(
                "400",
                "InvalidKey",
                "InvalidKey",
                format!("Invalid key: {key}"),
            ),
            KnowledgeError::BadKey(KeyError::OutsideOwnFolder(_)) => {
                E::new("403", "AccessDenied", "Unauthorized", error.to_string())
            }
            KnowledgeError::BadBody(why) | KnowledgeError::Invalid(why) => E::invalid(why),
            KnowledgeError::Storage(StorageError::InvalidRange) => E::new(
                "400",
                "InvalidRange",
                "invalid_range",
                "invalid range provided",
            ),
            KnowledgeError::Storage(StorageError::Unavailable(why)) => {
                tracing::warn!(error = why, "storage unavailable");
                E::new(
                    "503",
                    "InternalError",
                    "storage_unavailable",
                    "storage is unavailable",
                )
            }
            KnowledgeError::Db(crate::db::DbError::Unavailable(why)) => {
                tracing::warn!(error = why, "database unavailable");
                E::new(
                    "503",
                    "DatabaseTimeout",
                    "database_unavailable",
                    "the database is unavailable",
                )
            }
            KnowledgeError::Db(crate::db::DbError::Forbidden(why)) => {
                E::new("403", "AccessDenied", "Unauthorized", why)
            }
            other => {
                tracing::error!(error = %other, "storage API error");
                E::new("500", "InternalError", "internal", "internal error")
            }
        }
    }
}

impl From<ApiError> for StorageApiError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Knowledge(e) => e.into(),
            ApiError::RangeNotSatisfiable { .. } => StorageApiError::new(
                "400",
                "InvalidRange",
                "invalid_range",
                "invalid range provided",
            ),
            ApiError::NoCredentials
            | ApiError::InvalidApiKey
            | ApiError::NotBearer
            | ApiError::Token(_) => {
                StorageApiError::new("403", "InvalidJWT", "Unauthorized", error.to_string())
            }
            ApiError::Problem(p) if matches!(p.status.as_u16(), 401 | 403) => {
                StorageApiError::new("403", "AccessDenied", "Unauthorized", p.message)
            }
            ApiError::Problem(p) if p.status.is_server_error() => StorageApiError::new(
                "503",
                "ServiceUnavailable",
                "Service Unavailable",
                p.message,
            ),
            other => StorageApiError::invalid(other.to_string()),
        }
    }
}

type Answer = Result<Response<Body>, StorageApiError>;

/// Routes one `/storage/v1` request.
pub async fn route(app: &App, request: Request<Incoming>) -> Response<Body> {
    handle(app, request)
        .await
        .unwrap_or_else(StorageApiError::into_response)
}

async fn handle(app: &App, request: Request<Incoming>) -> Answer {
    let path = request
        .uri()
        .path()
        .strip_prefix("/storage/v1")
        .unwrap_or("")
        .to_owned();
    let method = request.method().clone();
    // Signed URLs carry their own authorisation.
    if method == Method::GET {
        if let Some(rest) = path.strip_prefix("/object/sign/") {
            return signed_download(app, rest, request.uri().query(), request.headers()).await;
        }
    }
    let caller = auth::identify(app, request.headers())
        .await
        .map_err(StorageApiError::from)?;
    let user = User::from_claims(&caller.claims)
        .ok_or_else(|| StorageApiError::from(KnowledgeError::NotSignedIn))?;
    let Some(rest) = path.strip_prefix("/object/") else {
        return Err(StorageApiError::new(
            "404",
            "NotFound",
            "not_found",
            format!("no route for {path}"),
        ));
    };
    match (method, rest) {
        (Method::POST, "move") => move_or_copy(app, &user, request, false).await,
        (Method::POST, "copy") => move_or_copy(app, &user, request, true).await,
        (Method::POST, r) if r.starts_with("list/") => {
            list(app, &user, bucket_only(app, &r[5..])?, request).await
        }
        (Method::POST, r) if r.starts_with("sign/") => sign(app, &user, &r[5..], request).await,
        (Method::GET, r) if r.starts_with("info/") => {
            let r = r[5..].strip_prefix("authenticated/").unwrap_or(&r[5..]);
            info(app, &user, object_key(app, r)?).await
        }
        (Method::GET, r) => {
            let r = r.strip_prefix("authenticated/").unwrap_or(r);
            let row = find(app, &user, &object_key(app, r)?).await?;
            Ok(download(app, &row, request.headers(), false, false).await?)
        }
        (Method::HEAD, r) => {
            let r = r.strip_prefix("authenticated/").unwrap_or(r);
            let row = find(app, &user, &object_key(app, r)?).await?;
            Ok(download(app, &row, request.headers(), false, true).await?)
        }
        (Method::POST, r) => upload(app, &user, object_key(app, r)?, false, request).await,
        (Method::PUT, r) => upload(app, &user, object_key(app, r)?, true, request).await,
        (Method::DELETE, r) => remove(app, &user, bucket_only(app, r)?, request).await,
        (method, _) => Err(StorageApiError::invalid(format!(
            "{method} {path} is not supported"
        ))),
    }
}

/// `{bucket}/{key…}` → the key, percent-decoded; other buckets are NoSuchBucket.
fn object_key(app: &App, bucket_and_key: &str) -> Result<String, StorageApiError> {
    let (bucket, key) = bucket_and_key
        .split_once('/')
        .unwrap_or((bucket_and_key, ""));
    bucket_only(app, bucket)?;
    let key = percent_encoding::percent_decode_str(key)
        .decode_utf8()
        .map_err(|_| {
            StorageApiError::new("400", "InvalidKey", "InvalidKey", "Invalid key: not UTF-8")
        })?;
    if key.is_empty() {
        return Err(StorageApiError::new(
            "400",
            "InvalidKey",
            "InvalidKey",
            "Invalid key: ",
        ));
    }
    Ok(key.into_owned())
}

fn bucket_only<'a>(app: &App, bucket: &'a str) -> Result<&'a str, StorageApiError> {
    let ours = app.knowledge.bucket().map_err(StorageApiError::from)?;
    if bucket.trim_end_matches('/') == ours {
        Ok(bucket)
    } else {
        Err(StorageApiError::no_such_bucket())
    }
}

/// A stored file of the user's at `key`; keys outside their folder are refused as such.
async fn find(app: &App, user: &User, key: &str) -> Result<FileRow, StorageApiError> {
    let key = keys::owned_key(&user.id.to_string(), key).map_err(KnowledgeError::from)?;
    Ok(app.knowledge.find(user, Lookup::Key(&key)).await?)
}

async fn upload(
    app: &App,
    user: &User,
    key: String,
    update: bool,
    request: Request<Incoming>,
) -> Answer {
    let (parts, body) = request.into_parts();
    let body = refuse_declared_oversize(app, &parts.headers, body)?;
    let upsert = update || header_text(&parts.headers, "x-upsert") == Some("true");
    let file_name = keys::display_name(keys::base_name(&key));
    let target = Target::Path {
        key: key.clone(),
        upsert,
        must_exist: update,
    };
    let content_type = header_text(&parts.headers, "content-type")
        .unwrap_or("")
        .to_owned();
    let row = if let Ok(boundary) = multer::parse_boundary(&content_type) {
        // multipart: `cacheControl`, maybe `metadata`, then the file (storage-js names it "").
        let mut form = multer::Multipart::new(body_bytes(body), boundary);
        let mut cache_control = None;
        let mut metadata = json!({});
        loop {
            let Some(mut field) = form
                .next_field()
                .await
                .map_err(|e| StorageApiError::invalid(e.to_string()))?
            else {
                return Err(StorageApiError::invalid("no file in the form"));
            };
            if field.file_name().is_none() && field.name().is_some_and(|n| !n.is_empty()) {
                let name = field.name().unwrap_or("").to_owned();
                let text = field
                    .text()
                    .await
                    .map_err(|e| StorageApiError::invalid(e.to_string()))?;
                match name.as_str() {
                    "cacheControl" => cache_control = Some(format!("max-age={}", text.trim())),
                    "metadata" => metadata = user_metadata(&text)?,
                    _ => {}
                }
                continue;
            }
            let declared = field.content_type().map(|m| m.essence_str().to_owned());
            let upload = Upload {
                target,
                file_name: file_name.clone(),
                content_type: type_of(declared.as_deref(), &file_name),
                cache_control,
                agent_id: None,
                metadata,
            };
            break app
                .knowledge
                .upload(user, upload, &mut field)
                .await
                .map_err(StorageApiError::from)?;
        }
    } else {
        let metadata = match header_text(&parts.headers, "x-metadata") {
            None => json!({}),
            Some(encoded) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| {
                        StorageApiError::invalid("x-metadata must be base64-encoded JSON")
                    })?;
                user_metadata(&String::from_utf8_lossy(&decoded))?
            }
        };
        let declared = content_type
            .split(';')
            .next()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let upload = Upload {
            target,
            file_name: file_name.clone(),
            content_type: type_of(declared, &file_name),
            cache_control: header_text(&parts.headers, "cache-control").map(str::to_owned),
            agent_id: None,
            metadata,
        };
        app.knowledge
            .upload(user, upload, body_bytes(body))
            .await
            .map_err(StorageApiError::from)?
    };
    let bucket = app.knowledge.bucket().map_err(StorageApiError::from)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"Id": row.id, "Key": format!("{bucket}/{key}")}),
    ))
}

fn user_metadata(text: &str) -> Result<Value, StorageApiError> {
    match serde_json::from_str::<Value>(text) {
        Ok(object @ Value::Object(_)) => Ok(object),
        _ => Err(StorageApiError::invalid("metadata must be a JSON object")),
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn json_body<T: for<'de> Deserialize<'de>>(
    request: Request<Incoming>,
) -> Result<T, StorageApiError> {
    let limited = http_body_util::Limited::new(request.into_body(), 1024 * 1024);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| StorageApiError::invalid(format!("body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| StorageApiError::invalid(format!("body: {e}")))
}

/// The `metadata` object Supabase's listing and deletions show for an object.
fn object_metadata(row: &FileRow) -> Value {
    let size = row.size_bytes.unwrap_or(0);
    json!({
        "eTag": row.e_tag(),
        "size": size,
        "mimetype": row.content_type,
        "cacheControl": row.cache_control.clone().unwrap_or_else(|| "no-cache".into()),
        "lastModified": row.updated_at,
        "contentLength": size,
        "httpStatusCode": 200,
    })
}

/// An object as the Storage server's `objects` table shows it.
fn object_record(bucket: &str, row: &FileRow) -> Value {
    json!({
        "name": row.storage_path,
        "bucket_id": bucket,
        "owner": row.user_id,
        "owner_id": row.user_id,
        "id": row.id,
        "updated_at": row.updated_at,
        "created_at": row.created_at,
        "last_accessed_at": row.updated_at,
        "metadata": object_metadata(row),
        "user_metadata": row.metadata,
    })
}

async fn info(app: &App, user: &User, key: String) -> Answer {
    let row = find(app, user, &key).await?;
    let bucket = app.knowledge.bucket().map_err(StorageApiError::from)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": row.id,
            "name": key,
            "version": null,
            "bucket_id": bucket,
            "size": row.size_bytes,
            "content_type": row.content_type,
            "cache_control": row.cache_control,
            "etag": row.e_tag(),
            "metadata": row.metadata,
            "last_modified": row.updated_at,
            "created_at": row.created_at,
        }),
    ))
}

#[derive(Deserialize)]
struct ListBody {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
    offset: Option<usize>,
    #[serde(rename = "sortBy")]
    sort_by: Option<SortBy>,
    #[serde(default)]
    search: String,
}

#[derive(Deserialize)]
struct SortBy {
    column: String,
    order: Option<String>,
}

/// The entries directly under a prefix: files, and folders (`id: null`) for deeper keys; names
/// relative to the prefix, as the Storage server's `search` answers.
async fn list(app: &App, user: &User, _bucket: &str, request: Request<Incoming>) -> Answer {
    let body: ListBody = json_body(request).await?;
    let mut prefix = body.prefix.trim_start_matches('/').to_owned();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    let rows = app
        .knowledge
        .under_prefix(user, &prefix)
        .await
        .map_err(StorageApiError::from)?;
    let search = body.search.to_lowercase();
    let mut folders: Vec<String> = Vec::new();
    let mut entries: Vec<(String, Value)> = Vec::new();
    for row in &rows {
        let Some(rest) = row
            .storage_path
            .as_deref()
            .and_then(|p| p.strip_prefix(&prefix))
        else {
            continue;
        };
        match rest.split_once('/') {
            Some((folder, _))
                if folder.to_lowercase().starts_with(&search)
                    && !folders.iter().any(|f| f == folder) =>
            {
                folders.push(folder.to_owned());
            }
            Some(_) => {}
            None if rest.to_lowercase().starts_with(&search) => entries.push((
                rest.to_owned(),
                json!({
                    "name": rest,
                    "id": row.id,
                    "updated_at": row.updated_at,
                    "created_at": row.created_at,
                    "last_accessed_at": row.updated_at,
                    "metadata": object_metadata(row),
                }),
            )),
            None => {}
        }
    }
    for folder in folders {
        entries.push((
            folder.clone(),
            json!({"name": folder, "id": null, "updated_at": null, "created_at": null,
                   "last_accessed_at": null, "metadata": null}),
        ));
    }
    let (column, descending) = match &body.sort_by {
        Some(sort) => (sort.column.as_str(), sort.order.as_deref() == Some("desc")),
        None => ("name", false),
    };
    entries.sort_by(|(a_name, a), (b_name, b)| {
        let key = |v: &Value| v[column].as_str().map(str::to_owned);
        let order = match column {
            "created_at" | "updated_at" | "last_accessed_at" => key(a).cmp(&key(b)),
            _ => a_name.cmp(b_name),
        };
        if descending {
            order.reverse()
        } else {
            order
        }
    });
    let offset = body.offset.unwrap_or(0);
    let limit = body.limit.unwrap_or(100).clamp(1, 1000);
    let page: Vec<Value> = entries
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, v)| v)
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(page)))
}

#[derive(Deserialize)]
struct RemoveBody {
    prefixes: Vec<String>,
}

/// Deletes the named objects that are the caller's; answers the deleted ones.
async fn remove(app: &App, user: &User, _bucket: &str, request: Request<Incoming>) -> Answer {
    let body: RemoveBody = json_body(request).await?;
    if body.prefixes.len() > 1000 {
        return Err(StorageApiError::invalid(
            "at most 1000 objects can be deleted per request",
        ));
    }
    let bucket = app
        .knowledge
        .bucket()
        .map_err(StorageApiError::from)?
        .to_owned();
    let mut deleted = Vec::new();
    for key in &body.prefixes {
        let row = match find(app, user, key).await {
            Ok(row) => row,
            // Keys that are not (or not the caller's) are skipped, as the Storage server does.
            Err(e)
                if e.code == "NoSuchKey" || e.code == "AccessDenied" || e.code == "InvalidKey" =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        app.knowledge
            .delete(user, &row)
            .await
            .map_err(StorageApiError::from)?;
        deleted.push(object_record(&bucket, &row));
    }
    Ok(json_response(StatusCode::OK, &Value::Array(deleted)))
}

#[derive(Deserialize)]
struct MoveBody {
    #[serde(rename = "bucketId")]
    bucket_id: String,
    #[serde(rename = "sourceKey")]
    source_key: String,
    #[serde(rename = "destinationKey")]
    destination_key: String,
    #[serde(rename = "destinationBucket")]
    destination_bucket: Option<String>,
}

async fn move_or_copy(app: &App, user: &User, request: Request<Incoming>, copy: bool) -> Answer {
    let body: MoveBody = json_body(request).await?;
    bucket_only(app, &body.bucket_id)?;
    if let Some(other) = &body.destination_bucket {
        bucket_only(app, other)?;
    }
    let from = find(app, user, &body.source_key).await?;
    let bucket = app
        .knowledge
        .bucket()
        .map_err(StorageApiError::from)?
        .to_owned();
    if copy {
        let row = app
            .knowledge
            .copy(user, &from, &body.destination_key)
            .await
            .map_err(StorageApiError::from)?;
        let mut answer = object_record(&bucket, &row);
        answer["Id"] = json!(row.id);
        answer["Key"] = json!(format!("{bucket}/{}", body.destination_key));
        Ok(json_response(StatusCode::OK, &answer))
    } else {
        let row = app
            .knowledge
            .move_to(user, &from, &body.destination_key)
            .await
            .map_err(StorageApiError::from)?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "message": "Successfully moved",
                "Id": row.id,
                "Key": body.destination_key,
            }),
        ))
    }
}

#[derive(Deserialize)]
struct SignBody {
    #[serde(rename = "expiresIn")]
    expires_in: u64,
    paths: Option<Vec<String>>,
}

/// The most a signed URL may live: a week, as Supabase allows.
const MAX_SIGNED_URL_SECS: u64 = 7 * 24 * 3600;
const NOT_SIGNABLE: &str = "Either the object does not exist or you do not have access to it";

async fn sign(app: &App, user: &User, rest: &str, request: Request<Incoming>) -> Answer {
    let body: SignBody = json_body(request).await?;
    if body.expires_in == 0 || body.expires_in > MAX_SIGNED_URL_SECS {
        return Err(StorageApiError::invalid(format!(
            "expiresIn must be from 1 to {MAX_SIGNED_URL_SECS} seconds"
        )));
    }
    let bucket = app
        .knowledge
        .bucket()
        .map_err(StorageApiError::from)?
        .to_owned();
    if rest.trim_end_matches('/') == bucket {
        // Several paths at once.
        let paths = body.paths.unwrap_or_default();
        let mut answers = Vec::new();
        for path in paths {
            let signed = match find(app, user, &path).await {
                Ok(_) => Some(signed_url(app, &bucket, &path, body.expires_in)?),
                Err(_) => None,
            };
            answers.push(json!({
                "error": if signed.is_some() { Value::Null } else { NOT_SIGNABLE.into() },
                "path": path,
                "signedURL": signed,
            }));
        }
        return Ok(json_response(StatusCode::OK, &Value::Array(answers)));
    }
    let key = object_key(app, rest)?;
    find(app, user, &key).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"signedURL": signed_url(app, &bucket, &key, body.expires_in)?}),
    ))
}

/// `/object/sign/{bucket}/{key}?token=…`, the key unencoded as the Storage server answers it.
fn signed_url(
    app: &App,
    bucket: &str,
    key: &str,
    expires_in: u64,
) -> Result<String, StorageApiError> {
    let now = unix_now();
    let claims = json!({"url": format!("{bucket}/{key}"), "scope": "download", "iat": now, "exp": now + expires_in});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&url_signing_key(app)),
    )
    .map_err(|e| StorageApiError::new("500", "InternalError", "internal", e.to_string()))?;
    Ok(format!("/object/sign/{bucket}/{key}?token={token}"))
}

/// The key signed URLs are signed with: derived from the project's JWT secret (or, for a
/// JWKS-only project, the service_role key), so a signed-URL token is never also an API token.
fn url_signing_key(app: &App) -> Vec<u8> {
    let supabase = &app.settings.supabase;
    let secret = supabase
        .jwt
        .secret
        .as_deref()
        .unwrap_or(&supabase.service_role_key);
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"dana storage signed urls v1");
    mac.finalize().into_bytes().to_vec()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Deserialize)]
struct SignedToken {
    url: String,
    scope: String,
}

/// `GET /object/sign/{bucket}/{key}?token=…[&download=name]`: no session needed, the token names
/// the object and expires.
async fn signed_download(
    app: &App,
    rest: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Answer {
    let key = object_key(app, rest)?;
    let bucket = app
        .knowledge
        .bucket()
        .map_err(StorageApiError::from)?
        .to_owned();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let token = param("token").ok_or_else(|| {
        StorageApiError::new(
            "400",
            "MissingParameter",
            "MissingParameter",
            "Missing Required Parameter token",
        )
    })?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims = ["exp".to_owned()].into();
    validation.validate_aud = false;
    validation.leeway = 0;
    let signed = jsonwebtoken::decode::<SignedToken>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(&url_signing_key(app)),
        &validation,
    )
    .map_err(|e| StorageApiError::new("400", "InvalidJWT", "InvalidJWT", e.to_string()))?
    .claims;
    if signed.scope != "download" {
        return Err(StorageApiError::new(
            "400",
            "InvalidSignature",
            "InvalidSignature",
            "Token is not scoped for download",
        ));
    }
    if signed.url != format!("{bucket}/{key}") {
        return Err(StorageApiError::new(
            "400",
            "InvalidSignature",
            "InvalidSignature",
            "The url do not match the signature",
        ));
    }
    let row = app
        .knowledge
        .find_signed(&key)
        .await
        .map_err(StorageApiError::from)?;
    let mut response = download(app, &row, headers, false, false).await?;
    if let Some(name) = param("download") {
        let name = if name.is_empty() {
            row.file_name.clone()
        } else {
            keys::display_name(&name)
        };
        response.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&keys::content_disposition(&name)).expect("encoded"),
        );
    }
    Ok(response)
}
