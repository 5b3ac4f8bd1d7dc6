//! exam-depository: collects students' exam answer files and serves them to examiners.
//!
//! Layers, outermost first:
//! - [`cli`] and [`config`]: the command line and the configuration contract.
//! - [`server`]: assembles the state, the router, the background sweeper and the listener.
//! - [`http`]: extract → call → map; no SQL and no storage calls of its own.
//! - [`depository`]: the use cases (register, upload, download, sweep) and their rules.
//! - [`domain`]: validated values and pure rules, with no I/O.
//! - [`db`] and [`storage`]: the database (SQLite or PostgreSQL) and the object store
//!   (local disk or S3).
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod db;
pub mod depository;
pub mod domain;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod receipts;
pub mod secrets;
pub mod server;
pub mod storage;
pub mod sweeper;
pub mod telemetry;
