//! Test helpers: a mosquitto process on a loopback port, a small PKI made with rcgen, and
//! a scripted MQTT peer for wire-level checks ([`peer`]).
#![allow(dead_code)]

pub mod peer;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A fresh scratch directory under the system temp dir (removed on drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "pubsub-sdk-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto broker on 127.0.0.1:`port`, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
    extra: String,
}

impl Mosquitto {
    /// Start mosquitto on a free port with `extra` config lines for its listener.
    pub fn start(extra: &str) -> Mosquitto {
        Self::start_on(free_port(), extra)
    }

    pub fn start_on(port: u16, extra: &str) -> Mosquitto {
        let dir = TempDir::new("mosq");
        let child = spawn(&dir, port, extra);
        Mosquitto {
            child,
            port,
            dir,
            extra: extra.to_owned(),
        }
    }

    /// Kill the broker (the port stays ours to reuse).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port with the same configuration.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.dir, self.port, &self.extra);
    }
}

fn spawn(dir: &TempDir, port: u16, extra: &str) -> Child {
    let conf = dir.path().join("mosquitto.conf");
    let user = if is_root() { "user root\n" } else { "" };
    std::fs::write(
        &conf,
        format!("{user}persistence false\nlog_dest stderr\nlog_type error\nlistener {port} 127.0.0.1\n{extra}\n"),
    )
    .unwrap();
    let child = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA, a server certificate for `localhost`/127.0.0.1, and a client certificate.
pub struct Pki {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    pub client_pem: String,
    pub client_key_pem: String,
    pub client_der: Vec<u8>,
    pub client_key_der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "pubsub test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let mut server =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "thing-1");
        let client_key = KeyPair::generate().unwrap();
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();

        Pki {
            ca_pem: ca_cert.pem(),
            server_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            client_der: client_cert.der().to_vec(),
            client_key_der: client_key.serialize_der(),
        }
    }

    /// Write ca.pem, server.pem, server.key into `dir`; returns their paths.
    pub fn write_server_files(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca = dir.join("ca.pem");
        let cert = dir.join("server.pem");
        let key = dir.join("server.key");
        std::fs::write(&ca, &self.ca_pem).unwrap();
        std::fs::write(&cert, &self.server_pem).unwrap();
        std::fs::write(&key, &self.server_key_pem).unwrap();
        (ca, cert, key)
    }
}

/// The default MQTT configuration without automatic reconnects (a failure stays the
/// final status).
pub fn no_reconnect() -> pubsub::MqttConfiguration {
    let mut m = pubsub::MqttConfiguration::default();
    m.auto_reconnect = false;
    m
}

/// Poll `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
