//! End-to-end tests of the HTTP API against each backend (see `helpers.rs`).

mod helpers;

mod batching;
mod browser;
mod cli;
mod deployment;
mod downloads;
mod exports;
mod faults;
mod guarantees;
mod integrity;
mod observability;
mod process;
mod replicas;
mod roster;
mod security;
mod service;
mod students;
mod uploads;
