//! The client's config file: named contexts (server, CA, token), like a kubeconfig, so that a person who
//! works with several agents does not repeat `--server --ca --token` on every command.
//!
//! File: `$PORIN_CONFIG`, else `$XDG_CONFIG_HOME/porin/config.yaml`, else `~/.config/porin/config.yaml`.
//! Precedence for each of server, CA and token: the flag or its environment variable (`PORIN_SERVER`,
//! `PORIN_CA`, `PORIN_TOKEN`), then the context (`--context NAME`, `PORIN_CONTEXT`, else `current-context`),
//! then the built-in default (the local agent's Unix socket with peer credentials).
//!
//! ```yaml
//! current-context: prod
//! contexts:
//!   - name: prod
//!     server: https://10.0.0.1:9443
//!     ca: /etc/porin/prod-ca.crt
//!     token-file: /home/me/.porin/prod.token   # or `token: ...` (the file is then written with mode 0600)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<ContextEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ContextEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl ContextEntry {
    /// The token, read from `token-file` when that is set.
    pub fn token(&self) -> Result<Option<String>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        match &self.token_file {
            None => Ok(None),
            Some(f) => {
                let t = std::fs::read_to_string(f).map_err(Error::io(format!("context {:?}: token-file {}", self.name, f.display())))?;
                Ok(Some(t.trim().to_string()).filter(|t| !t.is_empty()))
            }
        }
    }
}

/// Where the config file is.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PORIN_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(x).join("porin/config.yaml"));
    }
    std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| PathBuf::from(h).join(".config/porin/config.yaml"))
}

impl Config {
    /// The config file, or an empty config when there is none. A file that exists but does not parse is an
    /// error naming the file and the problem (never silently ignored: it could point at another cluster).
    pub fn load(path: &Path) -> Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(Config::default()),
            Ok(text) => serde_saphyr::from_str(&text).map_err(|e| invalid!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(invalid!("{}: {e}", path.display())),
        }
    }

    /// Writes the file (mode 0600: it may hold tokens), creating its directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        let text = serde_saphyr::to_string(self).map_err(|e| invalid!("{e}"))?;
        let tmp = path.with_extension("yaml.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Error::io(format!("writing {}", tmp.display())))?;
        f.write_all(text.as_bytes()).map_err(Error::io(format!("writing {}", tmp.display())))?;
        f.sync_all().map_err(Error::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(Error::io(format!("writing {}", path.display())))?;
        Ok(())
    }

    pub fn context(&self, name: &str) -> Option<&ContextEntry> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// The file as `porin config view` shows it: YAML, every token replaced by `REDACTED`.
    pub fn redacted_yaml(&self) -> Result<String> {
        let mut shown = self.clone();
        for c in &mut shown.contexts {
            if c.token.is_some() {
                c.token = Some("REDACTED".into());
            }
        }
        serde_saphyr::to_string(&shown).map_err(|e| invalid!("encoding the config file: {e}"))
    }

    /// `porin config get-contexts`: CURRENT (`*`), NAME, SERVER and AUTH (token, token file or peer credentials).
    pub fn contexts_table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .contexts
            .iter()
            .map(|c| {
                let cur = if self.current_context.as_deref() == Some(c.name.as_str()) { "*" } else { "" };
                let auth = match (&c.token, &c.token_file) {
                    (Some(_), _) => "token".to_string(),
                    (None, Some(f)) => format!("token-file {}", f.display()),
                    (None, None) => "peer credentials".to_string(),
                };
                [cur.to_string(), c.name.clone(), c.server.clone().unwrap_or_else(|| "-".into()), auth]
            })
            .collect();
        let header = ["CURRENT", "NAME", "SERVER", "AUTH"].map(String::from);
        let mut w = [0usize; 4];
        for r in std::iter::once(&header).chain(&rows) {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.len());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&header).chain(&rows) {
            let line = format!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3], w0 = w[0], w1 = w[1], w2 = w[2]);
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Make `name` the current context; `path` (the file) names where it was looked for.
    pub fn use_context(&mut self, name: &str, path: &Path) -> Result<()> {
        if self.context(name).is_none() {
            bail!("no context named {name:?} in {}", path.display());
        }
        self.current_context = Some(name.to_string());
        Ok(())
    }

    /// Create or update a context: what `u` gives replaces the old value (a token replaces a token file and the
    /// reverse; paths are made absolute); it becomes current when asked or when none is.
    pub fn set_context(&mut self, u: ContextEntry, current: bool) -> Result<()> {
        let idx = match self.contexts.iter().position(|c| c.name == u.name) {
            Some(i) => i,
            None => {
                self.contexts.push(ContextEntry { name: u.name.clone(), ..Default::default() });
                self.contexts.len() - 1
            }
        };
        let absolute = |p: &Path| std::path::absolute(p).map_err(Error::io(format!("resolving {}", p.display())));
        let c = &mut self.contexts[idx];
        if let Some(v) = u.server {
            c.server = Some(v);
        }
        if let Some(v) = u.ca {
            c.ca = Some(absolute(&v)?);
        }
        if let Some(v) = u.token_file {
            c.token_file = Some(absolute(&v)?);
            c.token = None;
        }
        if let Some(v) = u.token {
            c.token = Some(v);
            c.token_file = None;
        }
        if current || self.current_context.is_none() {
            self.current_context = Some(u.name);
        }
        Ok(())
    }

    /// Remove context `name` (and unset it as current); `path` names the file in the error.
    pub fn delete_context(&mut self, name: &str, path: &Path) -> Result<()> {
        let before = self.contexts.len();
        self.contexts.retain(|c| c.name != name);
        if self.contexts.len() == before {
            bail!("no context named {name:?} in {}", path.display());
        }
        if self.current_context.as_deref() == Some(name) {
            self.current_context = None;
        }
        Ok(())
    }

    /// The context in use: `explicit` (--context / PORIN_CONTEXT), else `current-context`. A named context
    /// that does not exist is an error.
    pub fn active(&self, explicit: Option<&str>) -> Result<Option<&ContextEntry>> {
        match explicit.or(self.current_context.as_deref()) {
            None => Ok(None),
            Some(n) => match self.context(n) {
                Some(c) => Ok(Some(c)),
                None => {
                    let known: Vec<&str> = self.contexts.iter().map(|c| c.name.as_str()).collect();
                    bail!("context {n:?} is not in the config file (contexts: {})", if known.is_empty() { "none".into() } else { known.join(", ") })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unknown_context() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/config.yaml");
        assert_eq!(Config::load(&p).unwrap(), Config::default());
        let tf = dir.path().join("t");
        std::fs::write(&tf, "secret\n").unwrap();
        let c = Config {
            current_context: Some("a".into()),
            contexts: vec![
                ContextEntry { name: "a".into(), server: Some("https://127.0.0.1:1".into()), token_file: Some(tf), ..Default::default() },
                ContextEntry { name: "b".into(), server: Some("/tmp/x.sock".into()), ..Default::default() },
            ],
        };
        c.save(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let back = Config::load(&p).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.active(None).unwrap().unwrap().token().unwrap().as_deref(), Some("secret"));
        assert_eq!(back.active(Some("b")).unwrap().unwrap().server.as_deref(), Some("/tmp/x.sock"));
        let e = back.active(Some("nope")).unwrap_err().to_string();
        assert!(e.contains("\"nope\"") && e.contains("a, b"), "{e}");
        std::fs::write(&p, "contexts: [{name: a, sever: x}]\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("config.yaml") && e.contains("sever"), "{e}");
    }
}
