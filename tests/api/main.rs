//! Integration tests: each starts the real app on 127.0.0.1:0 with a
//! temporary data directory, on an SQLite file there or, when
//! `LATCHKEY_TEST_DATABASE_URL` names a PostgreSQL server, on a database of
//! its own made there, and drives it over HTTP as a client would.

mod admin;
mod audit;
mod backup;
mod caps;
mod connections;
mod cors;
mod crash;
mod durability;
mod errors;
mod feed;
mod headers;
mod health;
mod helpers;
mod insomnia;
mod jwt;
mod key_cache;
mod keyring;
mod keys;
mod lifecycle;
mod metrics;
mod migrate;
mod openapi;
mod partition;
mod password;
mod postgres;
mod proxy;
mod readme;
mod request_log;
mod revalidation;
mod revocation;
mod schemas;
mod signing;
mod startup;
mod throttle;
mod todos;
mod token;
mod users;
