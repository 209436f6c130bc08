//! [`KnowledgeStore`]: the bucket's objects over aws-sdk-s3.

use crate::error::StorageError;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::task::JoinHandle;
use url::Url;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the bucket is and how to reach it (Supabase's names for its S3 endpoint settings).
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// `STORAGE_S3_URL`: the S3 endpoint (Supabase: `https://<ref>.supabase.co/storage/v1/s3`).
    pub endpoint: Url,
    /// `S3_REGION`.
    pub region: String,
    /// `S3_PROTOCOL_ACCESS_KEY_ID` / `S3_PROTOCOL_ACCESS_KEY_SECRET`.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `KNOWLEDGE_BUCKET` (`knowledge-files`).
    pub bucket: String,
    /// Path-style addressing (`endpoint/bucket/key`), which Supabase's endpoint needs.
    pub force_path_style: bool,
    /// Uploads above this size go multipart, in parts of this size (at least 5 MiB).
    pub part_size: usize,
    /// Parts uploaded at the same time.
    pub parallel_parts: usize,
}

impl StorageSettings {
    pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
    pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes, computed while they streamed.
    pub sha256: String,
    pub e_tag: Option<String>,
}

/// Why a streamed upload did not store anything.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The body failed while it streamed (client gone, bad multipart framing, …).
    #[error("the upload body failed: {0}")]
    Body(BoxError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An object's metadata.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub size: u64,
    pub e_tag: Option<String>,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub last_modified: Option<std::time::SystemTime>,
}

/// An object (or part of one) being read.
pub struct Download {
    pub info: ObjectInfo,
    /// Bytes in this answer.
    pub content_length: u64,
    /// `bytes a-b/total` when a range was asked for.
    pub content_range: Option<String>,
    body: ByteStream,
}

impl Download {
    /// The bytes, as they arrive from S3. Pieces that have already arrived are joined (up to
    /// [`COALESCE_BYTES`]), so a reader writing them on sends fewer, larger writes.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, StorageError>> + Send {
        let pieces = futures_util::stream::unfold(self.body, |mut body| async move {
            match body.next().await {
                None => None,
                Some(Ok(bytes)) => Some((Ok(bytes), body)),
                Some(Err(e)) => Some((Err(StorageError::Unavailable(e.to_string())), body)),
            }
        });
        pieces.ready_chunks(COALESCE_PIECES).map(|ready| {
            if ready.len() == 1 {
                return ready.into_iter().next().expect("one piece");
            }
            let mut joined = Vec::with_capacity(COALESCE_BYTES);
            for piece in ready {
                joined.extend_from_slice(&piece?);
            }
            Ok(Bytes::from(joined))
        })
    }
}

/// At most this many already-arrived pieces of a download are joined into one.
const COALESCE_PIECES: usize = 16;
/// What joining them usually comes to (the SDK hands over pieces of up to 16 KiB).
const COALESCE_BYTES: usize = 256 * 1024;

/// One object of a listing.
#[derive(Debug, Clone)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub e_tag: Option<String>,
    pub last_modified: Option<std::time::SystemTime>,
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<std::time::SystemTime>,
}

/// The knowledge-files bucket.
#[derive(Clone)]
pub struct KnowledgeStore {
    client: Client,
    bucket: String,
    part_size: usize,
    parallel_parts: usize,
}

impl KnowledgeStore {
    pub fn new(settings: &StorageSettings) -> KnowledgeStore {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let credentials = Credentials::new(
            &settings.access_key_id,
            &settings.secret_access_key,
            None,
            None,
            "dana-settings",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .endpoint_url(settings.endpoint.as_str().trim_end_matches('/'))
            .force_path_style(settings.force_path_style)
            .credentials_provider(credentials)
            .http_client(http)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            )
            .build();
        KnowledgeStore {
            client: Client::from_conf(config),
            bucket: settings.bucket.clone(),
            part_size: settings.part_size.max(StorageSettings::MIN_PART_SIZE),
            parallel_parts: settings.parallel_parts.max(1),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket unless it exists; true when it was created.
    pub async fn ensure_bucket(&self) -> Result<bool, StorageError> {
        match self.check_bucket().await {
            Ok(()) => return Ok(false),
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let already = e.as_service_error().is_some_and(|s| {
                    s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                });
                if already {
                    Ok(false)
                } else {
                    Err(StorageError::from_sdk(e))
                }
            }
        }
    }

    /// The bucket answers (readiness).
    pub async fn check_bucket(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(StorageError::from_sdk)
    }

    /// Streams `body` into `key`: one PUT when it fits in a part, a multipart upload otherwise
    /// (parts uploaded while the next is read, at most `parallel_parts` at once). The SHA-256
    /// and size are computed on the way. On any failure — the body failing or running past
    /// `limit`, S3 refusing a part, or this future being dropped (client gone) — the multipart
    /// upload is aborted, so no part is left behind; a single PUT that never started leaves
    /// nothing either.
    pub async fn put_stream<S, E>(
        &self,
        key: &str,
        content_type: &str,
        cache_control: Option<&str>,
        mut body: S,
        limit: u64,
    ) -> Result<StoredObject, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
    {
        let mut sha = Sha256::new();
        let mut size: u64 = 0;
        // Parts are assembled in buffers of exactly one part, handed to the SDK without a copy.
        let mut buffer: Vec<u8> = Vec::new();
        let mut multipart: Option<Multipart> = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => return Err(self.fail(multipart, UploadError::Body(e.into())).await),
            };
            size += chunk.len() as u64;
            if size > limit {
                return Err(self.fail(multipart, UploadError::TooLarge { limit }).await);
            }
            sha.update(&chunk);
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                if buffer.capacity() == 0 {
                    buffer.reserve_exact(self.part_size);
                }
                let take = rest.len().min(self.part_size - buffer.len());
                buffer.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buffer.len() < self.part_size {
                    continue;
                }
                let part = Bytes::from(std::mem::take(&mut buffer));
                if multipart.is_none() {
                    match self.start_multipart(key, content_type, cache_control).await {
                        Ok(started) => multipart = Some(started),
                        Err(e) => return Err(UploadError::Storage(e)),
                    }
                }
                let upload = multipart.as_mut().expect("started above");
                if let Err(e) = upload.send_part(part, self.parallel_parts).await {
                    return Err(self.fail(multipart, e.into()).await);
                }
            }
        }
        let digest = sha.finalize();
        let sha256 = hex::encode(digest);
        let e_tag = match multipart.take() {
            None => {
                // The server checks the body against the SHA-256 computed here.
                let put = self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .content_type(content_type)
                    .set_cache_control(cache_control.map(str::to_owned))
                    .checksum_sha256(base64_standard(&digest))
                    .body(ByteStream::from(buffer))
                    .send()
                    .await
                    .map_err(StorageError::from_sdk)?;
                put.e_tag
            }
            Some(mut upload) => {
                if !buffer.is_empty() {
                    if let Err(e) = upload
                        .send_part(Bytes::from(buffer), self.parallel_parts)
                        .await
                    {
                        return Err(self.fail(Some(upload), e.into()).await);
                    }
                }
                match upload.complete().await {
                    Ok(e_tag) => e_tag,
                    Err(e) => return Err(self.fail(Some(upload), e.into()).await),
                }
            }
        };
        Ok(StoredObject {
            key: key.to_owned(),
            size,
            sha256,
            e_tag,
        })
    }

    /// Stores `bytes` at `key` and proves it: the PUT carries the bytes' SHA-256, which the
    /// server checks (it refuses a body that does not match). A server that echoes the checksum
    /// it checked has proved the object; otherwise a HEAD must show the same size (and SHA-256,
    /// when the server keeps checksums). For the backfill, which must not clear a database column
    /// before its bytes are known to be in the bucket.
    pub async fn put_verified(
        &self,
        key: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<StoredObject, StorageError> {
        let digest = Sha256::digest(&bytes);
        let checksum = base64_standard(&digest);
        let size = bytes.len() as u64;
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_sha256(&checksum)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        let stored = StoredObject {
            key: key.to_owned(),
            size,
            sha256: hex::encode(digest),
            e_tag: put.e_tag.clone(),
        };
        if put.checksum_sha256.as_deref() == Some(checksum.as_str()) {
            return Ok(stored);
        }
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        let stored_size = head.content_length.unwrap_or(-1);
        if stored_size != size as i64 {
            return Err(StorageError::Other(format!(
                "{key}: the stored object has {stored_size} bytes, not {size}"
            )));
        }
        if let Some(stored) = head.checksum_sha256.as_deref() {
            if stored != checksum {
                return Err(StorageError::Other(format!(
                    "{key}: the stored object's SHA-256 differs from the bytes sent"
                )));
            }
        }
        Ok(stored)
    }

    async fn start_multipart(
        &self,
        key: &str,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<Multipart, StorageError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_cache_control(cache_control.map(str::to_owned))
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        let upload_id = created
            .upload_id
            .ok_or_else(|| StorageError::Other("no upload id in CreateMultipartUpload".into()))?;
        Ok(Multipart {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id,
            next_part: 1,
            in_flight: VecDeque::new(),
            done: Vec::new(),
            finished: false,
        })
    }

    /// Aborts what an upload started, then hands back the error.
    async fn fail(&self, multipart: Option<Multipart>, error: UploadError) -> UploadError {
        if let Some(upload) = multipart {
            upload.abort().await;
        }
        error
    }

    pub async fn head(&self, key: &str) -> Result<ObjectInfo, StorageError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        Ok(ObjectInfo {
            size: head.content_length.unwrap_or(0).max(0) as u64,
            e_tag: head.e_tag,
            content_type: head.content_type,
            cache_control: head.cache_control,
            last_modified: head.last_modified.and_then(|t| t.try_into().ok()),
        })
    }

    /// Reads an object, or the byte range `range` of it (an HTTP `Range` value such as
    /// `bytes=0-99`, already checked by the caller).
    pub async fn get(&self, key: &str, range: Option<&str>) -> Result<Download, StorageError> {
        let got = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(str::to_owned))
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        let content_length = got.content_length.unwrap_or(0).max(0) as u64;
        let total = got
            .content_range
            .as_deref()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(content_length);
        Ok(Download {
            info: ObjectInfo {
                size: total,
                e_tag: got.e_tag,
                content_type: got.content_type,
                cache_control: got.cache_control,
                last_modified: got.last_modified.and_then(|t| t.try_into().ok()),
            },
            content_length,
            content_range: got.content_range,
            body: got.body,
        })
    }

    /// A GET URL for the object that works without credentials until `ttl` passes; the answer
    /// carries `content_disposition` when given.
    pub async fn presigned_get(
        &self,
        key: &str,
        ttl: Duration,
        content_disposition: Option<&str>,
    ) -> Result<String, StorageError> {
        let config =
            PresigningConfig::expires_in(ttl).map_err(|e| StorageError::Other(e.to_string()))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_response_content_disposition(content_disposition.map(str::to_owned))
            .presigned(config)
            .await
            .map_err(|e| StorageError::Other(e.to_string()))?;
        Ok(request.uri().to_owned())
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(StorageError::from_sdk)
    }

    /// Deletes up to 1000 objects in one request; keys that fail are returned with the reason.
    pub async fn delete_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<(String, String)>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StorageError::Other(e.to_string()))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| StorageError::Other(e.to_string()))?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        Ok(out
            .errors
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.key.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect())
    }

    /// Copies an object inside the bucket.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let source = format!(
            "{}/{}",
            self.bucket,
            percent_encoding::utf8_percent_encode(from, COPY_SOURCE)
        );
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(source)
            .send()
            .await
            .map(|_| ())
            .map_err(StorageError::from_sdk)
    }

    /// Every object whose key starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(StorageError::from_sdk)?;
            for object in page.contents.unwrap_or_default() {
                objects.push(ListedObject {
                    key: object.key.unwrap_or_default(),
                    size: object.size.unwrap_or(0).max(0) as u64,
                    e_tag: object.e_tag,
                    last_modified: object.last_modified.and_then(|t| t.try_into().ok()),
                });
            }
        }
        Ok(objects)
    }

    /// Multipart uploads started and never completed nor aborted.
    pub async fn pending_uploads(&self) -> Result<Vec<PendingUpload>, StorageError> {
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        Ok(out
            .uploads
            .unwrap_or_default()
            .into_iter()
            .map(|u| PendingUpload {
                key: u.key.unwrap_or_default(),
                upload_id: u.upload_id.unwrap_or_default(),
                initiated: u.initiated.and_then(|t| t.try_into().ok()),
            })
            .collect())
    }

    pub async fn abort_upload(&self, upload: &PendingUpload) -> Result<(), StorageError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(StorageError::from_sdk)
    }
}

/// `x-amz-copy-source` is a URL path: encode everything but the separators S3 expects.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn base64_standard(bytes: &[u8]) -> String {
    aws_smithy_types::base64::encode(bytes)
}

/// A multipart upload in progress. Dropped before it completed or was aborted (the request's
/// future dropped when the client went away), it stops its part uploads and aborts itself in the
/// background, so S3 keeps no parts.
struct Multipart {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    next_part: i32,
    in_flight: VecDeque<JoinHandle<Result<CompletedPart, StorageError>>>,
    done: Vec<CompletedPart>,
    finished: bool,
}

impl Multipart {
    /// Starts uploading `part`, first waiting for the oldest part while `parallel` are in flight.
    async fn send_part(&mut self, part: Bytes, parallel: usize) -> Result<(), StorageError> {
        while self.in_flight.len() >= parallel {
            self.wait_oldest().await?;
        }
        let number = self.next_part;
        self.next_part += 1;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(part));
        self.in_flight.push_back(tokio::spawn(async move {
            let sent = request.send().await.map_err(StorageError::from_sdk)?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(sent.e_tag)
                .build())
        }));
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<(), StorageError> {
        if let Some(handle) = self.in_flight.pop_front() {
            let part = handle
                .await
                .map_err(|e| StorageError::Other(format!("part upload task: {e}")))??;
            self.done.push(part);
        }
        Ok(())
    }

    async fn complete(&mut self) -> Result<Option<String>, StorageError> {
        while !self.in_flight.is_empty() {
            self.wait_oldest().await?;
        }
        self.done.sort_by_key(|p| p.part_number);
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.done)))
                    .build(),
            )
            .send()
            .await
            .map_err(StorageError::from_sdk)?;
        self.finished = true;
        Ok(completed.e_tag)
    }

    async fn abort(mut self) {
        self.finished = true;
        for handle in self.in_flight.drain(..) {
            handle.abort();
        }
        abort_upload(&self.client, &self.bucket, &self.key, &self.upload_id).await;
    }
}

async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    if let Err(e) = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        tracing::warn!(key, upload_id, error = %StorageError::from_sdk(e), "aborting a multipart upload failed; `reconcile-knowledge --fix` aborts it later");
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for handle in self.in_flight.drain(..) {
            handle.abort();
        }
        let (client, bucket, key, upload_id) = (
            self.client.clone(),
            self.bucket.clone(),
            self.key.clone(),
            self.upload_id.clone(),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { abort_upload(&client, &bucket, &key, &upload_id).await });
        }
    }
}
