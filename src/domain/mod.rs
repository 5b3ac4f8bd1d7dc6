//! Validated values and pure rules: no I/O, no axum, no sqlx.

pub mod audit;
pub mod codes;
pub mod filename;
pub mod roster;
pub mod student;
pub mod time;
pub mod window;
