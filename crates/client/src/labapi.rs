//! The lab agents' API for `porin_lab::cluster` ([`AgentApi`]): this crate's client over their Unix sockets.

use std::path::Path;

use hyper::Method;
use porin_lab::cluster::{AgentApi, ApiError};
use serde_json::Value;

use crate::client::{Client, ClientArgs, block_on};

/// The agents' API through [`Client`], over their Unix sockets.
pub struct SocketApi;

impl AgentApi for SocketApi {
    fn get(&self, socket: &Path, path: &str) -> Result<Value, ApiError> {
        call(socket, Method::GET, path, None)
    }
    fn post(&self, socket: &Path, path: &str, body: Value) -> Result<Value, ApiError> {
        call(socket, Method::POST, path, Some(serde_json::to_vec(&body)?))
    }
}

fn call(socket: &Path, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Value, ApiError> {
    let c = Client::new(&ClientArgs::socket(socket.display().to_string()));
    Ok(block_on(c.call(method, path, body))??)
}
