//! The stack's bucket, seen directly (as the operator would), and a relay that can cut the BFF
//! off from S3 and reconnect it: a real outage of the real S3 server, for one BFF only.

use dana_storage::{KnowledgeStore, StorageSettings};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The stack's knowledge bucket, with the stack's credentials.
pub fn store() -> KnowledgeStore {
    KnowledgeStore::new(&settings(&crate::setting("STORAGE_S3_URL")))
}

/// The stack's storage settings, with another endpoint.
pub fn settings(endpoint: &str) -> StorageSettings {
    StorageSettings {
        endpoint: url::Url::parse(endpoint).unwrap(),
        region: crate::setting("S3_REGION"),
        access_key_id: crate::setting("S3_PROTOCOL_ACCESS_KEY_ID"),
        secret_access_key: crate::setting("S3_PROTOCOL_ACCESS_KEY_SECRET"),
        bucket: crate::setting("KNOWLEDGE_BUCKET"),
        force_path_style: true,
        part_size: StorageSettings::MIN_PART_SIZE,
        parallel_parts: 2,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A TCP relay to the stack's S3. While `up` it passes connections through; while down it
/// drops every connection, new and open, as a stopped server would.
pub struct S3Relay {
    pub url: String,
    up: Arc<AtomicBool>,
}

impl S3Relay {
    pub async fn start() -> S3Relay {
        let target = crate::setting("STORAGE_S3_URL")
            .trim_start_matches("http://")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let switch = up.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !switch.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let target = target.clone();
                let switch = switch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let watch = async {
                        while switch.load(Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, _ = watch => {} }
                });
            }
        });
        S3Relay { url, up }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}
