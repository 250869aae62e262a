//! Tributary's processors: independent consumer binaries that take an upload from "parts
//! confirmed" to "ready".
//!
//! - [`assembler`]: folds `PartConfirmed` into the server-authoritative manifest and, on
//!   `UploadCompletionRequested`, completes the S3 multipart upload with the confirmed ETags.
//! - [`validator`]: sniffs the assembled object's bytes against its declared type.
//! - [`transformer`]: image variants (WebP) and video HLS, from the media-jobs topic.
//! - [`janitor`]: expires abandoned sessions and deletes rejected or deleted objects.
//!
//! Each is at-least-once (offsets stored after the side effect) with idempotent effects.

pub mod assembler;
pub mod janitor;
pub mod outcome;
pub mod service;
pub mod settings;
pub mod storage;
pub mod store;
pub mod transformer;
pub mod validator;
