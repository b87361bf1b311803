//! Integration tests: each starts the real app on 127.0.0.1:0 with an SQLite
//! file in a temporary directory and drives it over HTTP as a client would.

mod admin;
mod durability;
mod errors;
mod health;
mod helpers;
mod insomnia;
mod jwt;
mod keys;
mod lifecycle;
mod openapi;
mod readme;
mod revalidation;
mod revocation;
mod schemas;
mod signing;
mod startup;
mod todos;
mod token;
mod users;
