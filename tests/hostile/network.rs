//! The network: listeners the test opens on the host must stay unreached,
//! with the full policy and with each layer on its own.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use crate::harness::*;

struct Listeners {
    tcp: TcpListener,
    udp: UdpSocket,
    unix: UnixListener,
    abstract_: UnixListener,
    unix_path: std::path::PathBuf,
    abstract_name: String,
    _dir: tempfile::TempDir,
}

fn listeners() -> Listeners {
    use std::os::linux::net::SocketAddrExt;
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let unix_path = dir.path().join("host.sock");
    let unix = UnixListener::bind(&unix_path).unwrap();
    unix.set_nonblocking(true).unwrap();
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let abstract_name = format!("warden-hostile-{}-{n}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
    let abstract_ = UnixListener::bind_addr(&addr).unwrap();
    abstract_.set_nonblocking(true).unwrap();
    Listeners {
        tcp,
        udp,
        unix,
        abstract_,
        unix_path,
        abstract_name,
        _dir: dir,
    }
}

impl Listeners {
    fn args(&self) -> Vec<String> {
        vec![
            self.tcp.local_addr().unwrap().port().to_string(),
            self.udp.local_addr().unwrap().port().to_string(),
            self.unix_path.display().to_string(),
            self.abstract_name.clone(),
        ]
    }

    /// Nothing reached any listener.
    fn assert_untouched(&self) {
        std::thread::sleep(Duration::from_millis(100));
        assert!(self.tcp.accept().is_err(), "the TCP listener was reached");
        let mut buf = [0u8; 64];
        assert!(
            self.udp.recv_from(&mut buf).is_err(),
            "the UDP listener got a datagram"
        );
        if let Ok((mut s, _)) = self.unix.accept() {
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            panic!("the unix socket was reached: {got:?}");
        }
        assert!(
            self.abstract_.accept().is_err(),
            "the abstract unix socket was reached"
        );
    }
}

fn run_sockets(w: Warden, l: &Listeners) -> serde_json::Value {
    let args = l.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = w.python("sockets.py", &args);
    assert_eq!(r.status(), "ok", "{r:#?}");
    r.out_json()
}

#[test]
fn host_listeners_are_unreachable() {
    require_root();
    let l = listeners();
    let out = run_sockets(warden(), &l);
    l.assert_untouched();
    // Seccomp refuses internet and netlink sockets outright; unix sockets
    // exist but neither the host's path nor its abstract namespace is
    // visible from the box.
    for key in ["tcp_loopback", "tcp_external", "tcp6", "udp", "raw", "netlink"] {
        assert_eq!(out[key], "error: Permission denied", "{key}: {out}");
    }
    assert_eq!(out["unix_path"], "error: No such file or directory", "{out}");
    assert_eq!(out["unix_abstract"], "error: Connection refused", "{out}");
    assert!(out["packet"].as_str().unwrap().starts_with("error:"), "{out}");
}

/// The default profile with internet sockets allowed, to test the network
/// namespace and landlock without seccomp in front of them.
fn permissive_profile(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../jail/policy/default.json"),
    )
    .unwrap();
    let mut p: serde_json::Value = serde_json::from_str(&text).unwrap();
    p["name"] = "allow-inet".into();
    for rule in p["rules"].as_array_mut().unwrap() {
        if rule["syscall"] == "socket" && rule["action"] == "EACCES" {
            rule.as_object_mut().unwrap().remove("action");
            rule["comment"] = "test only: let the network namespace decide".into();
        }
    }
    let path = dir.join("allow-inet.json");
    std::fs::write(&path, serde_json::to_string(&p).unwrap()).unwrap();
    path.display().to_string()
}

#[test]
fn the_network_namespace_alone_keeps_the_host_unreachable() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let profile = permissive_profile(dir.path());
    let l = listeners();
    let out = run_sockets(warden().opts(&["--profile", &profile]), &l);
    l.assert_untouched();
    // Sockets open now, but the box's only interface is a loopback that is
    // down: nothing is routable. (Landlock also denies TCP connect on ABI 4+,
    // which reports EACCES first where it applies.)
    for key in ["tcp_loopback", "tcp_external", "tcp6", "udp"] {
        let v = out[key].as_str().unwrap();
        assert!(
            v == "error: Network is unreachable"
                || v == "error: Permission denied"
                || v == "error: Cannot assign requested address",
            "{key}: {v}"
        );
    }
    assert_eq!(out["interfaces"], serde_json::json!(["lo"]), "{out}");
    // Raw sockets need CAP_NET_RAW, which the box lacks.
    assert_eq!(out["raw"], "error: Operation not permitted", "{out}");
}
