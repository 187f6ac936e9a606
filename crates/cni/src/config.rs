//! What the runtime hands the plugin: the network configuration on stdin and the `CNI_*` environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{self, CniError, Result};

/// The spec versions this plugin implements, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0", "1.1.0"];
/// The newest of them.
pub const LATEST_VERSION: &str = "1.1.0";

/// Defaults of the Porin fields.
pub const DEFAULT_SOCKET: &str = "/run/porin/porin.sock";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/porin";
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
pub const DEFAULT_POD_NAMESPACE: &str = "default";

/// The network configuration of one plugin invocation (a conflist entry with `name` and `cniVersion`
/// filled in by the runtime). Unknown top-level fields are refused (code 2, naming the field), except
/// `args` and the `cni.dev/` keys, which the spec lets a runtime add.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    /// The delegated IPAM plugin's configuration, passed on as written (`type` names its binary).
    pub ipam: Value,
    pub dns: Option<Value>,
    /// The agent's Unix socket (`agentSocket`).
    pub agent_socket: PathBuf,
    /// A file holding a `cni` token (`tokenFile`); required: the plugin never falls back to the
    /// root user's admin credentials.
    pub token_file: Option<PathBuf>,
    /// Where the plugin records what it created, per network (`dataDir`).
    pub data_dir: PathBuf,
    /// How long ADD waits for the pod's policy to be in the kernel (`timeoutSeconds`).
    pub timeout_seconds: u64,
    /// The namespace of pods named by container id when `CNI_ARGS` carries no `K8S_POD_NAMESPACE`.
    pub pod_namespace: String,
    pub mtu: Option<u32>,
    /// `prevResult` (CHECK, DEL, or chained ADD).
    pub prev_result: Option<Value>,
    /// GC: the attachments that stay (`cni.dev/valid-attachments`).
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The whole object as received (delegated to IPAM).
    pub raw: Value,
}

/// One attachment: a container's interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

const KNOWN: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "ipam",
    "dns",
    "args",
    "runtimeConfig",
    "capabilities",
    "prevResult",
    "agentSocket",
    "tokenFile",
    "dataDir",
    "timeoutSeconds",
    "podNamespace",
    "mtu",
];

fn bad(path: &str, problem: impl std::fmt::Display) -> CniError {
    CniError::new(error::INVALID_CONFIG, format!("network configuration: {path}: {problem}"))
}

fn string(v: &Value, path: &str, required: bool) -> Result<Option<String>> {
    match v.get(path) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(bad(path, "missing")),
        Some(Value::String(s)) if s.is_empty() && required => Err(bad(path, "empty")),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(path, format!("expected a string, got {other}"))),
    }
}

/// Parses the bytes on stdin. Version problems are code 1, unknown fields 2, anything else 7, and bytes
/// that are not a JSON object 6.
pub fn parse(stdin: &[u8]) -> Result<NetConf> {
    let raw: Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(error::DECODE_FAILURE, format!("network configuration on stdin is not JSON: {e}")))?;
    let Some(obj) = raw.as_object() else {
        return Err(CniError::new(error::DECODE_FAILURE, "network configuration on stdin is not a JSON object"));
    };
    for k in obj.keys() {
        if !KNOWN.contains(&k.as_str()) && !k.starts_with("cni.dev/") {
            return Err(CniError::new(
                error::UNSUPPORTED_FIELD,
                format!("network configuration: unsupported field {k:?} = {}", obj[k]),
            )
            .with_details(format!("known fields: {}", KNOWN.join(", "))));
        }
    }
    let cni_version = string(&raw, "cniVersion", true)?.unwrap_or_default();
    check_version(&cni_version)?;
    let name = string(&raw, "name", true)?.unwrap_or_default();
    if !valid_network_name(&name) {
        return Err(bad("name", format!("{name:?} must start with an alphanumeric character, then alphanumerics, '_', '.' or '-'")));
    }
    let plugin_type = string(&raw, "type", true)?.unwrap_or_default();
    let ipam = match raw.get("ipam") {
        Some(v @ Value::Object(m)) => {
            match m.get("type") {
                Some(Value::String(t)) if !t.is_empty() && !t.contains('/') => {}
                Some(Value::String(t)) if t.contains('/') => return Err(bad("ipam.type", format!("{t:?} must be a plugin name, not a path"))),
                _ => return Err(bad("ipam.type", "missing: name the IPAM plugin (for example host-local)")),
            }
            v.clone()
        }
        Some(other) => return Err(bad("ipam", format!("expected an object, got {other}"))),
        None => return Err(bad("ipam", "missing: porin-cni delegates addresses to an IPAM plugin (for example {\"type\": \"host-local\", ...})")),
    };
    let timeout_seconds = match raw.get("timeoutSeconds") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_SECONDS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=3600).contains(&n) => n,
            _ => return Err(bad("timeoutSeconds", format!("{v}: expected whole seconds from 1 to 3600"))),
        },
    };
    let mtu = match raw.get("mtu") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (576..=65535).contains(&n) => Some(n as u32),
            _ => return Err(bad("mtu", format!("{v}: expected 576 to 65535"))),
        },
    };
    let valid_attachments = match raw.get("cni.dev/valid-attachments") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<Vec<Attachment>>(v.clone())
                .map_err(|e| bad("cni.dev/valid-attachments", format!("expected [{{\"containerID\", \"ifname\"}}]: {e}")))?,
        ),
    };
    let pod_namespace = string(&raw, "podNamespace", false)?.unwrap_or_else(|| DEFAULT_POD_NAMESPACE.to_string());
    Ok(NetConf {
        cni_version,
        name,
        plugin_type,
        ipam,
        dns: raw.get("dns").cloned(),
        agent_socket: string(&raw, "agentSocket", false)?.unwrap_or_else(|| DEFAULT_SOCKET.to_string()).into(),
        token_file: string(&raw, "tokenFile", false)?.map(PathBuf::from),
        data_dir: string(&raw, "dataDir", false)?.unwrap_or_else(|| DEFAULT_DATA_DIR.to_string()).into(),
        timeout_seconds,
        pod_namespace,
        mtu,
        prev_result: raw.get("prevResult").filter(|v| !v.is_null()).cloned(),
        valid_attachments,
        raw,
    })
}

/// Code 1 unless `v` is one of [`SUPPORTED_VERSIONS`].
pub fn check_version(v: &str) -> Result<()> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(error::INCOMPATIBLE_VERSION, format!("incompatible CNI version {v:?}"))
            .with_details(format!("porin-cni supports {}", SUPPORTED_VERSIONS.join(", "))))
    }
}

fn valid_network_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric()) && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '.' | '-'))
}

/// `"1.0.0"` → (1, 0, 0); None when not a plain semantic version.
pub fn semver(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let t = (it.next()??, it.next()??, it.next()??);
    if it.next().is_some() { None } else { Some(t) }
}

/// The command the runtime asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
    /// Commands that exist only from spec 1.1.0.
    pub fn since_1_1(self) -> bool {
        matches!(self, Command::Status | Command::Gc)
    }
}

/// The `CNI_*` environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Env {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: BTreeMap<String, String>,
    pub path: Vec<PathBuf>,
}

/// Reads the variables `cmd` needs from `get` (the process environment in production). A missing
/// required variable is code 4, naming every missing one.
pub fn env(cmd: Command, get: &dyn Fn(&str) -> Option<String>) -> Result<Env> {
    let required: &[&str] = match cmd {
        Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
        // DEL may come without a netns (the sandbox is already gone).
        Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
        Command::Gc | Command::Status => &["CNI_PATH"],
        Command::Version => &[],
    };
    let missing: Vec<&str> = required.iter().copied().filter(|k| get(k).is_none_or(|v| v.is_empty())).collect();
    if !missing.is_empty() {
        return Err(CniError::new(error::INVALID_ENV, format!("missing environment variable(s): {}", missing.join(", "))));
    }
    let ifname = get("CNI_IFNAME").unwrap_or_default();
    if !ifname.is_empty() && (ifname.len() > 15 || ifname.contains('/') || ifname.chars().any(char::is_whitespace) || ifname == "." || ifname == "..") {
        return Err(CniError::new(error::INVALID_ENV, format!("CNI_IFNAME {ifname:?} is not a valid interface name (at most 15 characters, no '/' or spaces)")));
    }
    let container_id = get("CNI_CONTAINERID").unwrap_or_default();
    if container_id.len() > 256 || container_id.contains('/') || container_id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(CniError::new(error::INVALID_ENV, format!("CNI_CONTAINERID {container_id:?} has characters a container id may not have")));
    }
    Ok(Env {
        container_id,
        netns: get("CNI_NETNS").unwrap_or_default(),
        ifname,
        args: parse_args(&get("CNI_ARGS").unwrap_or_default())?,
        path: get("CNI_PATH").unwrap_or_default().split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect(),
    })
}

/// `CNI_ARGS`: `K1=V1;K2=V2`. A pair without `=` is code 4.
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in s.split(';').filter(|p| !p.trim().is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CniError::new(error::INVALID_ENV, format!("CNI_ARGS: {pair:?} is not KEY=VALUE")));
        };
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Which pod an attachment belongs to: `K8S_POD_NAMESPACE`/`K8S_POD_NAME` from `CNI_ARGS` (what
/// kubelet's runtimes pass), else the container id in the configured `podNamespace` (plain runtimes such
/// as `ctr run --cni`).
pub fn pod_of(conf: &NetConf, env: &Env) -> Result<(String, String)> {
    let ns = env.args.get("K8S_POD_NAMESPACE").cloned().unwrap_or_else(|| conf.pod_namespace.clone());
    let name = env.args.get("K8S_POD_NAME").cloned().unwrap_or_else(|| env.container_id.clone());
    for (what, v) in [("pod namespace", &ns), ("pod name", &name)] {
        let ok = !v.is_empty()
            && v.len() <= 253
            && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(CniError::new(
                error::INVALID_ENV,
                format!("{what} {v:?} (from CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME or CNI_CONTAINERID) is not a DNS-1123 name"),
            ));
        }
    }
    Ok((ns, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"cniVersion":"1.0.0","name":"porin","type":"porin-cni",
        "ipam":{"type":"host-local","ranges":[[{"subnet":"10.77.0.0/24"}]]},
        "agentSocket":"/run/x.sock","tokenFile":"/etc/t","timeoutSeconds":5,"mtu":1400}"#;

    #[test]
    fn parses_a_good_configuration() {
        let c = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(c.name, "porin");
        assert_eq!(c.ipam["type"], "host-local");
        assert_eq!(c.agent_socket, PathBuf::from("/run/x.sock"));
        assert_eq!(c.token_file, Some(PathBuf::from("/etc/t")));
        assert_eq!(c.timeout_seconds, 5);
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.pod_namespace, "default");
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    fn code_of(s: &str) -> u32 {
        parse(s.as_bytes()).unwrap_err().code
    }

    #[test]
    fn errors_use_the_spec_codes() {
        assert_eq!(code_of("not json"), error::DECODE_FAILURE);
        assert_eq!(code_of("[1]"), error::DECODE_FAILURE);
        assert_eq!(code_of(&GOOD.replace("1.0.0", "0.4.0")), error::INCOMPATIBLE_VERSION);
        assert_eq!(code_of(&GOOD.replace("1.0.0", "2.0.0")), error::INCOMPATIBLE_VERSION);
        let e = parse(GOOD.replace("\"mtu\"", "\"mtuu\"").as_bytes()).unwrap_err();
        assert_eq!(e.code, error::UNSUPPORTED_FIELD);
        assert!(e.msg.contains("\"mtuu\"") && e.msg.contains("1400"), "names field and value: {}", e.msg);
        assert_eq!(code_of(&GOOD.replace("\"host-local\"", "\"\"")), error::INVALID_CONFIG);
        assert_eq!(code_of(&GOOD.replace("\"host-local\"", "\"/tmp/evil\"")), error::INVALID_CONFIG);
        assert_eq!(code_of(&GOOD.replace("\"timeoutSeconds\":5", "\"timeoutSeconds\":0")), error::INVALID_CONFIG);
        assert_eq!(code_of(&GOOD.replace("\"name\":\"porin\"", "\"name\":\"-x\"")), error::INVALID_CONFIG);
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"porin-cni"}"#.as_bytes()).unwrap_err();
        assert_eq!(e.code, error::INVALID_CONFIG);
        assert!(e.msg.contains("ipam"), "{}", e.msg);
        // The runtime's own keys are accepted.
        let gc = GOOD.replace("\"mtu\":1400", "\"mtu\":1400,\"args\":{\"x\":1},\"cni.dev/valid-attachments\":[{\"containerID\":\"c1\",\"ifname\":\"eth0\"}]");
        let c = parse(gc.as_bytes()).unwrap();
        assert_eq!(c.valid_attachments.unwrap(), vec![Attachment { container_id: "c1".into(), ifname: "eth0".into() }]);
    }

    fn getter(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<&str, &str> = vars.iter().copied().collect();
        move |k| m.get(k).map(|v| v.to_string())
    }

    #[test]
    fn environment_names_what_is_missing() {
        let e = env(Command::Add, &getter(&[("CNI_CONTAINERID", "c1")])).unwrap_err();
        assert_eq!(e.code, error::INVALID_ENV);
        assert!(e.msg.contains("CNI_NETNS") && e.msg.contains("CNI_IFNAME") && e.msg.contains("CNI_PATH"), "{}", e.msg);
        assert!(!e.msg.contains("CNI_CONTAINERID"), "{}", e.msg);
        // DEL without a netns is fine; VERSION needs nothing.
        assert!(env(Command::Del, &getter(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/b")])).is_ok());
        assert!(env(Command::Version, &getter(&[])).is_ok());
        let e = env(Command::Del, &getter(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "../../x"), ("CNI_PATH", "/b")])).unwrap_err();
        assert_eq!(e.code, error::INVALID_ENV);
        let full = getter(&[
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/proc/1/ns/net"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/a:/b"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1"),
        ]);
        let e = env(Command::Add, &full).unwrap();
        assert_eq!(e.path, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        let c = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(pod_of(&c, &e).unwrap(), ("shop".to_string(), "web-1".to_string()));
        let plain = Env { container_id: "porin-t-a".into(), ..Default::default() };
        assert_eq!(pod_of(&c, &plain).unwrap(), ("default".to_string(), "porin-t-a".to_string()));
        let upper = Env { container_id: "Bad_Name".into(), ..Default::default() };
        assert_eq!(pod_of(&c, &upper).unwrap_err().code, error::INVALID_ENV);
        assert_eq!(parse_args("novalue").unwrap_err().code, error::INVALID_ENV);
    }

    #[test]
    fn versions() {
        assert!(check_version("1.1.0").is_ok());
        assert_eq!(semver("1.0.0"), Some((1, 0, 0)));
        assert_eq!(semver("1.0"), None);
        assert!(Command::Gc.since_1_1() && !Command::Del.since_1_1());
    }
}
