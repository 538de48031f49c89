// Operations (admins): liveness and readiness with their checks, pool
// usage, and charts of executions per second, latency percentiles and
// failures, polled from the server's own Prometheus metrics (/metrics).
import { useEffect, useRef, useState } from 'react';
import { fetchRaw, type Health } from '../api/client';
import { parseMetrics, point, sum, type Point, type Sample } from '../api/metrics';
import { LineChart } from '../components/LineChart';
import { Fields, PageTitle, ProblemView, Status } from '../components/common';

const POLL_MS = 2000;
const KEEP = 90;

async function health(path: string): Promise<Health> {
  // /readyz answers 503 with the same document when a check fails.
  const r = await fetch(path);
  return (await r.json()) as Health;
}

export function Operations() {
  const [ready, setReady] = useState<Health>();
  const [live, setLive] = useState<Health>();
  const [now, setNow] = useState<Sample[]>([]);
  const [points, setPoints] = useState<Point[]>([]);
  const [error, setError] = useState<unknown>();
  const prev = useRef<{ at: number; samples: Sample[] }>(undefined);

  useEffect(() => {
    let stop = false;
    async function tick() {
      try {
        const [l, r, text] = await Promise.all([health('/healthz'), health('/readyz'), fetchRaw('/metrics').then((x) => x.text())]);
        if (stop) return;
        const samples = parseMetrics(text);
        const at = Date.now();
        setLive(l);
        setReady(r);
        setNow(samples);
        if (prev.current) {
          const p = point(at, (at - prev.current.at) / 1000, prev.current.samples, samples);
          setPoints((ps) => [...ps, p].slice(-KEEP));
        }
        prev.current = { at, samples };
        setError(undefined);
      } catch (e) {
        if (!stop) setError(e);
      }
    }
    void tick();
    const t = setInterval(tick, POLL_MS);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, []);

  const gauge = (name: string, label?: [string, string]) => sum(now, name, label ? (l) => l[label[0]] === label[1] : undefined);
  const times = points.map((p) => p.at);
  const ms = (v: number | null) => (v == null ? null : v * 1000);
  const checks = (ready?.checks ?? {}) as Record<string, unknown>;
  return (
    <>
      <PageTitle sub={`Polled every ${POLL_MS / 1000} s from /healthz, /readyz and /metrics.`}>Operations</PageTitle>
      <ProblemView error={error} />
      <div className="cards">
        <section className="card" aria-label="Health">
          <h2>Health</h2>
          <Fields
            rows={[
              ['Process', <Status value={live?.status} />],
              ['Ready', <Status value={ready?.status} />],
              ...Object.entries(checks).map(([k, v]): [string, string] => [k.replace(/_/g, ' '), String(v)]),
            ]}
          />
        </section>
        <section className="card" aria-label="Pool">
          <h2>Box pool</h2>
          <Fields
            rows={[
              ['Idle', String(gauge('warden_pool_boxes', ['state', 'idle']))],
              ['Busy', String(gauge('warden_pool_boxes', ['state', 'busy']))],
              ['Starting', String(gauge('warden_pool_boxes', ['state', 'starting']))],
              ['In flight', String(gauge('warden_executions_in_flight'))],
              ['Warm calls', String(gauge('warden_warm_calls_total'))],
              ['Cold fallbacks', String(gauge('warden_cold_fallbacks_total'))],
              ['Box restarts', String(gauge('warden_sandbox_process_restarts_total'))],
              ['Refused (busy)', String(gauge('warden_executions_rejected_total'))],
            ]}
          />
        </section>
        <section className="card" aria-label="Plugins">
          <h2>Plugin versions</h2>
          <Fields
            rows={['active', 'pending', 'draft', 'inactive', 'rejected', 'failed'].map((s): [string, string] => [
              s,
              String(gauge('warden_plugin_versions', ['status', s])),
            ])}
          />
        </section>
      </div>
      <div className="charts">
        <LineChart title="Executions per second" unit="/s" times={times} series={[{ name: 'all', className: 's1', values: points.map((p) => p.perSecond) }]} />
        <LineChart
          title="Latency"
          unit="ms"
          times={times}
          series={[
            { name: 'p50', className: 's1', values: points.map((p) => ms(p.p50)) },
            { name: 'p95', className: 's2', values: points.map((p) => ms(p.p95)) },
            { name: 'p99', className: 's3', values: points.map((p) => ms(p.p99)) },
          ]}
        />
        <LineChart title="Failures per second" unit="/s" times={times} series={[{ name: 'failed, timeout, error', className: 's3', values: points.map((p) => p.failuresPerSecond) }]} />
      </div>
      <p className="muted small">
        What <code>warden doctor</code> reports about the node (kernel facilities, isolation layers) has no API endpoint yet; run it on the
        server's machine.
      </p>
    </>
  );
}
