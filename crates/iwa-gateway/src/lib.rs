//! The `iwa` gateway: configuration, proxy, listener, and the CLI commands. The binary
//! (`src/main.rs`) is a thin `main` over this library.

pub mod admin;
pub mod audit;
pub mod backend;
pub mod check;
pub mod config;
pub mod demo;
pub mod hosting;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod tls;
