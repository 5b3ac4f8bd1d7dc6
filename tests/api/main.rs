//! End-to-end tests of the HTTP API against each backend (see `helpers.rs`).

mod helpers;

mod cli;
mod downloads;
mod replicas;
mod service;
mod students;
mod uploads;
