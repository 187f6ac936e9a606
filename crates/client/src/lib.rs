//! # porin-client: the API client and the printers, shared by the CLI, its tests and the bench
//!
//! Owns: the HTTP/1.1 client of the agent's API (Unix socket, HTTPS, plain HTTP on loopback; one connection per
//! request), the client's config file with its named contexts, and the renderings of engine results and stored
//! objects (tables, grids, `-o` formats). Golden files pin the renderings (crates/porin/tests/golden).
//!
//! Never: agent state or agent logic (that is `porin-agent`, reached only over HTTP), flag parsing of
//! subcommands (`porin`), or printing to stdout by itself: functions return strings, the caller prints.

pub mod alerts;
pub mod capture;
pub mod client;
pub mod config;
pub mod getfmt;
pub mod kubeconfig;
pub mod labfmt;
pub mod live;
pub mod offline;
pub mod preview;
pub mod printers;
pub mod promote;
pub mod report;
pub mod review;
pub mod status;
pub mod targets;

pub use client::{Client, ClientArgs, ServerError, block_on, collection_path, enc, error_line, type_name};
