//! The `knowledge-files` bucket over S3 (keys, streamed uploads, ranged reads, presigning).
