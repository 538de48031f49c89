//! A box granted egress reaches exactly one thing: the listener the host
//! holds on the box's own loopback. Everything else stays refused: other
//! ports (landlock), datagram and raw sockets (seccomp), any other address
//! (no interface, no route), names (no DNS). Needs root.

use std::io::{Read, Write};
use std::time::Duration;

use warden_jail::{BoxSpec, Egress, EgressNet, Jail, JailConfig, PROXY_PORT, Status};

const PROBE: &str = r#"
import json, socket, os
out = {}
def attempt(name, fn):
    try:
        out[name] = fn()
    except OSError as e:
        out[name] = "%s:%s" % (type(e).__name__, e.errno)

def door():
    s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
    s.sendall(b"ping")
    data = s.recv(16)
    s.close()
    return data.decode()

def other_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("127.0.0.1", 8080))
    return "connected"

def outside():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("1.1.1.1", 3128))
    return "connected"

def bind_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 9999))
    s.listen(1)
    return "listening"

attempt("door", door)
attempt("other_port", other_port)
attempt("outside", outside)
attempt("bind", bind_port)
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM) and "made")
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) and "made")
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW) and "made")
attempt("dns", lambda: socket.getaddrinfo("pypi.org", 443))
with open("/proc/net/dev") as f:
    out["interfaces"] = sorted(l.split(":")[0].strip() for l in f.readlines()[2:])
out["resolv_conf"] = os.path.exists("/etc/resolv.conf")
print(json.dumps(out))
"#;

#[test]
fn a_box_granted_egress_reaches_only_its_door() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the egress test needs root: run it through scripts/test"
    );
    let jail = Jail::new(JailConfig::default()).expect("jail");
    let net = EgressNet::create(PROXY_PORT).expect("egress namespace");
    let listener = net.listener.try_clone().unwrap();
    // The host side of the door: answer one connection.
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        c.write_all(b"pong").unwrap();
    });
    let mut spec = BoxSpec::command(["/usr/bin/python3", "-c", PROBE]);
    spec.limits.wall_time = Duration::from_secs(20);
    spec.egress = Some(Egress {
        netns: net.netns.try_clone().unwrap(),
        port: net.port,
    });
    let out = jail.run(spec).expect("run");
    server.join().unwrap();
    assert_eq!(out.status, Status::Ok, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.sandbox.seccomp_profile, "egress");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["door"], "pong", "{v}");
    // Landlock: TCP connect to any other port, and bind, are refused.
    assert_eq!(v["other_port"], "PermissionError:13", "{v}");
    assert_eq!(v["bind"], "PermissionError:13", "{v}");
    // No route anywhere else (landlock refuses the port first when it differs).
    assert!(
        matches!(v["outside"].as_str(), Some("OSError:101" | "PermissionError:13")),
        "{v}"
    );
    // Seccomp: only TCP stream sockets (EACCES for internet datagram and
    // raw sockets, the default EPERM for packet sockets).
    for kind in ["udp", "raw", "packet"] {
        assert!(
            v[kind].as_str().is_some_and(|s| s.starts_with("PermissionError")),
            "{kind}: {v}"
        );
    }
    // No DNS, one interface (netlink sockets stay refused too).
    assert!(
        v["dns"].as_str().is_some_and(|s| s.starts_with("gaierror")),
        "{v}"
    );
    assert_eq!(v["interfaces"], serde_json::json!(["lo"]), "{v}");
    assert_eq!(v["resolv_conf"], false);
}

#[test]
fn a_box_without_egress_still_has_no_network_at_all() {
    assert!(rustix::process::geteuid().is_root());
    let jail = Jail::new(JailConfig::default()).expect("jail");
    let mut spec = BoxSpec::command(["/usr/bin/python3", "-c", PROBE]);
    spec.limits.wall_time = Duration::from_secs(20);
    let out = jail.run(spec).expect("run");
    assert_eq!(out.status, Status::Ok, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.sandbox.seccomp_profile, "default");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for kind in ["door", "other_port", "outside", "bind", "udp", "raw", "packet"] {
        assert!(
            v[kind].as_str().is_some_and(|s| s.starts_with("PermissionError")),
            "{kind}: {v}"
        );
    }
    assert_eq!(v["interfaces"], serde_json::json!(["lo"]), "{v}");
}
