# Convenience targets; each is one plain command you can also type yourself.
.PHONY: run test test-all services lint

run:            ## the service on the embedded default (SQLite + ./data)
	cargo run --release

test:           ## embedded backend always; PostgreSQL + S3 too when TEST_* variables are set
	cargo test

test-all:       ## start Garage (and check PostgreSQL), then require every backend
	eval "$$(scripts/dev-services)" && REQUIRE_ALL_BACKENDS=1 cargo test

services:       ## start Garage and print the environment for the tests and the service
	scripts/dev-services

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
