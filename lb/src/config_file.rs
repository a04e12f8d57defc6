//! The `--config` file: a TOML file with the same settings as the flags (`_` for `-`),
//! as the Kubernetes operator writes it for each LB machine (`lb-<machine>.toml`).
//!
//! Every key is read by hand from the parsed TOML table, with the parser its flag
//! uses, so an error always names the key (and the list index where there is one),
//! says what is wrong and how to write it. Unknown keys are errors: a typo must not
//! silently leave a setting at its default.
//!
//! ```toml
//! mode = "l2"                          # or "ipip"
//! xdp_mode = "native"                  # auto | native | generic
//! bucket_bits = 8                      # checked against the cluster's table
//! external_ips = ["203.0.113.10"]      # checked against the cluster's table
//! inside_sources = ["10.0.0.0/8"]      # --inside-prefix
//! cluster = ["demo-0.demo.default.svc:7700"]
//! fabric = "ens1f0"                    # default: the only interface, or the only "both" one
//! fabric_ip = "192.0.2.1"              # ipip: outer source (default: fabric's first IPv4)
//! next_hop_mac = "02:00:00:00:00:01"   # ipip: the fabric router's MAC
//! http_listen = "0.0.0.0:9190"         # /healthz, /readyz, /metrics
//! [[interfaces]]                       # --attach IF:SIDE
//! name = "ens1f0"
//! side = "both"                        # inside | outside | both (default both)
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use mfplane_core::BucketBits;
use toml::{Table, Value};
use tracing::info;

use crate::config::{
    AttachSpec, Ipv4Cidr, ModeArg, Side, parse_bucket_bits, parse_choice, parse_endpoint,
    parse_xdp_mode,
};
use crate::datapath::XdpModeChoice;
use crate::table::MacAddr;

/// Every key the file may hold, in the order `--help` lists their flags.
pub const KEYS: &[&str] = &[
    "interfaces",
    "xdp_mode",
    "fabric",
    "fabric_ip",
    "next_hop_mac",
    "inside_sources",
    "mode",
    "cluster",
    "bucket_bits",
    "external_ips",
    "http_listen",
];

/// Keys of one `[[interfaces]]` entry.
const INTERFACE_KEYS: &[&str] = &["name", "side"];

/// A `--config` file that cannot be used. Each message starts with the file's path and
/// names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read (other than not existing yet, which is waited for).
    #[error("--config {path}: cannot read it: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("--config {path}: not valid TOML: {message}")]
    Syntax { path: String, message: String },
    /// A key this agent does not know (a typo, or a setting of another program).
    #[error("--config {path}: unknown key {key:?}: the keys are {known}")]
    UnknownKey {
        path: String,
        key: String,
        known: String,
    },
    /// A key whose value cannot be used.
    #[error("--config {path}: {key}: {reason}")]
    Value {
        path: String,
        key: String,
        reason: String,
    },
}

/// The settings of one file; `None` (or empty) where the file does not set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// Where it was read from, for error messages about its values.
    pub path: PathBuf,
    pub interfaces: Vec<AttachSpec>,
    pub xdp_mode: Option<XdpModeChoice>,
    pub fabric: Option<String>,
    pub fabric_ip: Option<Ipv4Addr>,
    pub next_hop_mac: Option<MacAddr>,
    pub inside_sources: Vec<Ipv4Cidr>,
    pub mode: Option<ModeArg>,
    pub cluster: Vec<String>,
    pub bucket_bits: Option<BucketBits>,
    pub external_ips: Vec<Ipv4Addr>,
    pub http_listen: Option<SocketAddr>,
}

impl ConfigFile {
    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    /// A [`FileError`] naming the path and, for a bad value, the key.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as the contents of `path`.
    ///
    /// # Errors
    /// As [`ConfigFile::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, FileError> {
        let shown = path.display().to_string();
        let table: Table = toml::from_str(text).map_err(|e| FileError::Syntax {
            path: shown.clone(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let r = Reader { path: &shown };
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                return Err(r.unknown(key.clone(), KEYS));
            }
        }
        let get = |key: &str| table.get(key);
        Ok(ConfigFile {
            path: path.to_owned(),
            interfaces: get("interfaces")
                .map(|v| r.interfaces(v))
                .transpose()?
                .unwrap_or_default(),
            xdp_mode: get("xdp_mode")
                .map(|v| r.parsed("xdp_mode", v, parse_xdp_mode))
                .transpose()?,
            fabric: get("fabric")
                .map(|v| r.parsed("fabric", v, parse_interface_name))
                .transpose()?,
            fabric_ip: get("fabric_ip")
                .map(|v| r.parsed("fabric_ip", v, parse_ipv4))
                .transpose()?,
            next_hop_mac: get("next_hop_mac")
                .map(|v| r.parsed("next_hop_mac", v, MacAddr::from_str))
                .transpose()?,
            inside_sources: get("inside_sources")
                .map(|v| r.list("inside_sources", v, Ipv4Cidr::from_str))
                .transpose()?
                .unwrap_or_default(),
            mode: get("mode")
                .map(|v| r.parsed("mode", v, parse_choice::<ModeArg>))
                .transpose()?,
            cluster: get("cluster")
                .map(|v| r.list("cluster", v, parse_endpoint))
                .transpose()?
                .unwrap_or_default(),
            bucket_bits: get("bucket_bits").map(|v| r.bucket_bits(v)).transpose()?,
            external_ips: get("external_ips")
                .map(|v| r.list("external_ips", v, parse_ipv4))
                .transpose()?
                .unwrap_or_default(),
            http_listen: get("http_listen")
                .map(|v| r.parsed("http_listen", v, parse_listen))
                .transpose()?,
        })
    }
}

/// Reads typed values out of TOML values, naming the key in every error.
struct Reader<'a> {
    path: &'a str,
}

impl Reader<'_> {
    fn value(&self, key: impl Into<String>, reason: impl Into<String>) -> FileError {
        FileError::Value {
            path: self.path.to_owned(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn unknown(&self, key: String, known: &[&str]) -> FileError {
        FileError::UnknownKey {
            path: self.path.to_owned(),
            key,
            known: known.join(", "),
        }
    }

    fn string<'v>(&self, key: &str, v: &'v Value) -> Result<&'v str, FileError> {
        v.as_str().ok_or_else(|| {
            self.value(
                key,
                format!(
                    "expected a string in quotes, found {} {v}",
                    article(v.type_str())
                ),
            )
        })
    }

    /// A string value parsed by `parse` (the flag's parser).
    fn parsed<T>(
        &self,
        key: &str,
        v: &Value,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, FileError> {
        parse(self.string(key, v)?).map_err(|reason| self.value(key, reason))
    }

    /// An array of strings, each parsed by `parse`; errors name `key[index]`.
    fn list<T>(
        &self,
        key: &str,
        v: &Value,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, FileError> {
        let items = v.as_array().ok_or_else(|| {
            self.value(
                key,
                format!(
                    "expected a list such as [\"...\", \"...\"], found {} {v}",
                    article(v.type_str())
                ),
            )
        })?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.parsed(&format!("{key}[{i}]"), item, &parse))
            .collect()
    }

    fn bucket_bits(&self, v: &Value) -> Result<BucketBits, FileError> {
        let n = v.as_integer().ok_or_else(|| {
            self.value(
                "bucket_bits",
                format!(
                    "expected a whole number (4 to 12, without quotes), found {} {v}",
                    article(v.type_str())
                ),
            )
        })?;
        parse_bucket_bits(&n.to_string()).map_err(|reason| self.value("bucket_bits", reason))
    }

    fn interfaces(&self, v: &Value) -> Result<Vec<AttachSpec>, FileError> {
        let hint = "write each interface as a table: [[interfaces]] then name = \"eth1\" and \
                    side = \"inside\" | \"outside\" | \"both\"";
        let items = v.as_array().ok_or_else(|| {
            self.value(
                "interfaces",
                format!("expected a list of tables, found {}: {hint}", v.type_str()),
            )
        })?;
        let mut out: Vec<AttachSpec> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = |field: &str| format!("interfaces[{i}].{field}");
            let t = item.as_table().ok_or_else(|| {
                self.value(
                    format!("interfaces[{i}]"),
                    format!("expected a table, found {}: {hint}", item.type_str()),
                )
            })?;
            for key in t.keys() {
                if !INTERFACE_KEYS.contains(&key.as_str()) {
                    return Err(self.unknown(format!("interfaces[{i}].{key}"), INTERFACE_KEYS));
                }
            }
            let name = match t.get("name") {
                Some(n) => self.parsed(&at("name"), n, parse_interface_name)?,
                None => {
                    return Err(self.value(
                        at("name"),
                        format!("missing: every interface needs its kernel name ({hint})"),
                    ));
                }
            };
            let side = t
                .get("side")
                .map(|s| self.parsed(&at("side"), s, parse_choice::<Side>))
                .transpose()?
                .unwrap_or_default();
            if out.iter().any(|o| o.name == name) {
                return Err(self.value(
                    at("name"),
                    format!("{name:?} is listed twice: list each interface once"),
                ));
            }
            out.push(AttachSpec { name, side });
        }
        Ok(out)
    }
}

fn article(type_str: &str) -> String {
    match type_str.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {type_str}"),
        _ => format!("a {type_str}"),
    }
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address: write it as a.b.c.d"))
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("{s:?} is not an address and port: write it as ip:port, e.g. 0.0.0.0:9190")
    })
}

/// A Linux interface name: 1 to 15 bytes, no `/`, whitespace or `:`.
pub(crate) fn parse_interface_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!(
            "{s:?} is not an interface name: Linux names are 1 to 15 characters"
        ));
    }
    if s.chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{s:?} is not an interface name: it may not hold '/', ':' or spaces"
        ));
    }
    Ok(s.to_owned())
}

/// How often a missing `--config` file is looked for.
pub const WAIT_POLL: Duration = Duration::from_secs(1);

/// Returns once `path` exists (or cannot be checked, which reading it will then
/// report), looking every `poll`. The operator writes a new LB machine's file a moment
/// after the machine is labelled, so the pod may start first. Says once, at info, that
/// it waits. Bounded only by the caller (the agent selects it against SIGTERM).
pub async fn wait_for(path: &Path, poll: Duration) {
    let mut said = false;
    while let Ok(false) = path.try_exists() {
        if !said {
            info!(
                path = %path.display(),
                "waiting for the configuration file to appear (the operator writes it once this machine is labelled)"
            );
            said = true;
        }
        tokio::time::sleep(poll).await;
    }
    if said {
        info!(path = %path.display(), "configuration file appeared");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
mode = "ipip"
xdp_mode = "generic"
bucket_bits = 10
external_ips = ["203.0.113.10", "203.0.113.11"]
inside_sources = ["10.0.0.0/8", "192.168.0.0/16"]
cluster = ["demo-0.demo.default.svc:7700", "10.1.0.2:7700"]
fabric = "ens1f2"
fabric_ip = "192.0.2.1"
next_hop_mac = "02:00:00:00:00:01"
http_listen = "0.0.0.0:9190"
[[interfaces]]
name = "ens1f0"
side = "inside"
[[interfaces]]
name = "ens1f1"
side = "outside"
[[interfaces]]
name = "ens1f2"
"#;

    fn parse(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(Path::new("/etc/mfplane/lb-m1.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn every_key_is_read() {
        let f = parse(FULL).unwrap();
        assert_eq!(f.mode, Some(ModeArg::Ipip));
        assert_eq!(f.xdp_mode, Some(XdpModeChoice::Generic));
        assert_eq!(f.bucket_bits.map(BucketBits::get), Some(10));
        assert_eq!(
            f.external_ips,
            vec![
                Ipv4Addr::new(203, 0, 113, 10),
                Ipv4Addr::new(203, 0, 113, 11)
            ]
        );
        assert_eq!(
            f.inside_sources,
            vec![
                Ipv4Cidr {
                    addr: Ipv4Addr::new(10, 0, 0, 0),
                    len: 8
                },
                Ipv4Cidr {
                    addr: Ipv4Addr::new(192, 168, 0, 0),
                    len: 16
                }
            ]
        );
        assert_eq!(
            f.cluster,
            vec!["demo-0.demo.default.svc:7700", "10.1.0.2:7700"]
        );
        assert_eq!(f.fabric.as_deref(), Some("ens1f2"));
        assert_eq!(f.fabric_ip, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(f.next_hop_mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(f.http_listen, Some("0.0.0.0:9190".parse().unwrap()));
        let sides: Vec<_> = f
            .interfaces
            .iter()
            .map(|i| (i.name.as_str(), i.side))
            .collect();
        assert_eq!(
            sides,
            vec![
                ("ens1f0", Side::Inside),
                ("ens1f1", Side::Outside),
                ("ens1f2", Side::Both)
            ]
        );
        for mode in ["auto", "native"] {
            let f = parse(&format!("xdp_mode = {mode:?}")).unwrap();
            assert!(f.xdp_mode.is_some());
        }
        assert_eq!(parse("mode = \"l2\"").unwrap().mode, Some(ModeArg::L2));
        // Nothing set is a valid file: flags may carry everything.
        assert_eq!(
            parse("").unwrap().path,
            Path::new("/etc/mfplane/lb-m1.toml")
        );
    }

    /// `(file text, key the error must name, words it must contain)`.
    const BAD: &[(&str, &str, &str)] = &[
        ("mode = \"vxlan\"", "mode:", "l2, ipip"),
        ("mode = 2", "mode:", "string in quotes"),
        ("xdp_mode = \"offload\"", "xdp_mode:", "use native"),
        ("xdp_mode = \"turbo\"", "xdp_mode:", "auto, native, generic"),
        ("bucket_bits = 13", "bucket_bits:", "4 to 12"),
        ("bucket_bits = \"8\"", "bucket_bits:", "without quotes"),
        ("bucket_bits = -1", "bucket_bits:", "4 to 12"),
        ("external_ips = \"203.0.113.1\"", "external_ips:", "a list"),
        (
            "external_ips = [\"203.0.113\"]",
            "external_ips[0]:",
            "a.b.c.d",
        ),
        (
            "inside_sources = [\"10.0.0.0/8\", \"10.0.0.0/33\"]",
            "inside_sources[1]:",
            "over 32",
        ),
        (
            "inside_sources = [\"10.0.0.0\"]",
            "inside_sources[0]:",
            "a.b.c.d/len",
        ),
        ("cluster = [\"demo-0\"]", "cluster[0]:", "host:port"),
        ("cluster = [7700]", "cluster[0]:", "string in quotes"),
        ("fabric = \"a/b\"", "fabric:", "'/'"),
        ("fabric = \"averyveryverylongname\"", "fabric:", "1 to 15"),
        ("fabric_ip = \"192.0.2\"", "fabric_ip:", "a.b.c.d"),
        (
            "next_hop_mac = \"02:00\"",
            "next_hop_mac:",
            "aa:bb:cc:dd:ee:ff",
        ),
        ("http_listen = \"localhost\"", "http_listen:", "ip:port"),
        ("interfaces = \"eth0\"", "interfaces:", "[[interfaces]]"),
        (
            "interfaces = [\"eth0\"]",
            "interfaces[0]:",
            "[[interfaces]]",
        ),
        (
            "[[interfaces]]\nside = \"inside\"",
            "interfaces[0].name:",
            "missing",
        ),
        (
            "[[interfaces]]\nname = \"eth0\"\nside = \"north\"",
            "interfaces[0].side:",
            "inside, outside, both",
        ),
        (
            "[[interfaces]]\nname = \"eth0\"\n[[interfaces]]\nname = \"eth0\"",
            "interfaces[1].name:",
            "listed twice",
        ),
    ];

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        for (text, key, words) in BAD {
            let e = parse(text).unwrap_err();
            assert!(
                e.starts_with("--config /etc/mfplane/lb-m1.toml: "),
                "{text}: {e}"
            );
            assert!(e.contains(key), "{text}: error does not name {key}: {e}");
            assert!(e.contains(words), "{text}: error lacks {words:?}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let e = parse("mode = \"l2\"\ninside_prefix = [\"10.0.0.0/8\"]").unwrap_err();
        assert!(e.contains("unknown key \"inside_prefix\""), "{e}");
        assert!(e.contains("inside_sources"), "lists the known keys: {e}");
        let e = parse("[[interfaces]]\nname = \"eth0\"\nsid = \"inside\"").unwrap_err();
        assert!(e.contains("unknown key \"interfaces[0].sid\""), "{e}");
        assert!(e.contains("name, side"), "{e}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = parse("mode = \"l2").unwrap_err();
        assert!(e.contains("not valid TOML") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = ConfigFile::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&dir.path().display().to_string()) && e.contains("cannot read"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn waits_until_the_file_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb-m1.toml");
        let poll = Duration::from_millis(20);
        // Absent: still waiting after many polls.
        let waited = tokio::time::timeout(Duration::from_millis(200), wait_for(&path, poll)).await;
        assert!(waited.is_err(), "returned while the file was missing");
        // Written later: returns within a few polls of it appearing.
        let writer = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                std::fs::write(&path, "mode = \"l2\"\n").unwrap();
            })
        };
        tokio::time::timeout(Duration::from_secs(5), wait_for(&path, poll))
            .await
            .expect("wait_for did not return after the file appeared");
        writer.await.unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().mode, Some(ModeArg::L2));
        // Present from the start: returns at once.
        tokio::time::timeout(Duration::from_millis(50), wait_for(&path, poll))
            .await
            .unwrap();
    }
}
