//! `POST /porin/v1/threatfeeds/{name}/push` (`porin threatfeed push NAME -f FILE`): the body is the feed's text
//! (newline-delimited addresses and networks, `#` comments); admin only. See [`crate::threatfeeds`].

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::{Value, json};

use super::{ApiError, Shared};
use crate::auth::Identity;

pub async fn push(State(st): State<Shared>, Extension(id): Extension<Identity>, Path(name): Path<String>, body: String) -> Result<Json<Value>, ApiError> {
    let status = crate::threatfeeds::push(&st, &id, &name, &body).await?;
    Ok(Json(json!({
        "kind": "GlobalThreatFeed",
        "name": name,
        "set": format!("{}{name}", crate::threatfeeds::SET_PREFIX),
        "status": status,
    })))
}

/// Adds the stored sync status to GlobalThreatFeed objects as the API returns them.
pub async fn with_status(st: &Shared, mut obj: Value) -> Value {
    let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else { return obj };
    if let (Some(s), Some(m)) = (crate::threatfeeds::status_json(st, &name).await, obj.as_object_mut()) {
        m.insert("status".into(), s);
    }
    obj
}
