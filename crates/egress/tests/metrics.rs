//! The proxy counts every connection by verdict and reason, and the bytes,
//! through the `metrics` facade (a recorder of its own process here).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

#[derive(Default)]
struct Counters(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl Counters {
    fn get(&self, name: &str) -> u64 {
        let map = self.0.lock().unwrap();
        map.get(name).map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

struct Rec(Arc<Counters>);

impl Recorder for Rec {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let mut map = (self.0).0.lock().unwrap();
        Counter::from_arc(map.entry(name).or_default().clone())
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn verdicts_reasons_and_bytes_are_counted() {
    let counters = Arc::new(Counters::default());
    metrics::set_global_recorder(Rec(counters.clone())).unwrap();

    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    let (handle, addr) = proxy(allow_upstream(port));
    let (h, mut s) = connect(addr, &format!("upstream.test:{port}"));
    assert_eq!(h.status, 200);
    round_trip(&mut s, b"12345");
    finish(s);
    let _ = connect(addr, "elsewhere.test:443");
    let _ = connect(addr, &format!("upstream.test:{}", port.wrapping_add(1).max(1)));
    records(&handle, 3);

    let c = |name: &str| counters.get(name);
    assert_eq!(
        c("warden_egress_connections_total{reason=none,verdict=allowed}"),
        1
    );
    assert_eq!(
        c("warden_egress_connections_total{reason=host_not_allowed,verdict=refused}"),
        1
    );
    assert_eq!(
        c("warden_egress_connections_total{reason=port_not_allowed,verdict=refused}"),
        1
    );
    assert_eq!(c("warden_egress_bytes_total{direction=up}"), 5);
    assert_eq!(c("warden_egress_bytes_total{direction=down}"), 5);
}
