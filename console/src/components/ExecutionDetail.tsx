// One execution record: status, the return value, stdout/stderr, the
// error, resource figures and artifacts. Used by the executions page and
// by "Try a plugin"; a session's execution names its session and language
// where a plugin's names its plugin and version.
import type { ReactNode } from 'react';
import { download, type Execution } from '../api/client';
import { Link } from 'wouter';
import { Fields, Json, Status, Time, bytes } from './common';

export function ExecutionDetail({ execution: e }: { execution: Execution }) {
  return (
    <div className="execution">
      <Fields
        rows={[
          ['Id', <Link href={`/executions/${e.id}`}>{e.id}</Link>],
          ['Status', <Status value={e.status} />],
          ['Error kind', e.error_kind],
          ['App', e.app],
          ...(e.plugin
            ? ([['Plugin', <Link href={`/plugins/${e.plugin}`}>{`${e.plugin} ${e.version}`}</Link>]] as [string, ReactNode][])
            : []),
          ...(e.session ? ([['Session', <Link href={`/sessions/${e.session}`}>{e.session}</Link>]] as [string, ReactNode][]) : []),
          ...(e.kind !== 'plugin' ? ([['Language', e.language]] as [string, ReactNode][]) : []),
          ...(e.run_mode ? ([['Runs as', e.run_mode]] as [string, ReactNode][]) : []),
          ...(e.template ? ([['Template', <Link href={`/templates/${e.template}`}>{e.template}</Link>]] as [string, ReactNode][]) : []),
          ['Mode', e.mode],
          ['Accepted', <Time ms={e.created_at} />],
          ['Finished', <Time ms={e.finished_at} />],
          ['Duration', e.duration_ms == null ? null : `${e.duration_ms.toFixed(1)} ms`],
          ['Warm box', e.warm ? 'yes' : 'no'],
          ['Exit', e.signal != null ? `signal ${e.signal}` : e.exit_code],
          ['Jail status', e.jail_status],
        ]}
      />
      {e.status === 'success' ? (
        <section>
          <h2>Return value</h2>
          <Json value={e.return_value} label="Return value" />
        </section>
      ) : null}
      {e.error ? (
        <section className="error-box">
          <h2>Error</h2>
          <p>
            <strong>{e.error.type}</strong>: {e.error.message}
            {e.error.file ? (
              <span className="muted">
                {' '}
                at {e.error.file}
                {e.error.line != null ? `:${e.error.line}` : ''}
              </span>
            ) : null}
          </p>
          {e.error.violations && e.error.violations.length > 0 ? (
            <ul className="problems">
              {e.error.violations.map((v, i) => (
                <li key={i}>
                  <code className="location">{v.location}</code> {v.message}
                </li>
              ))}
            </ul>
          ) : null}
          {e.error.traceback ? <pre className="output">{e.error.traceback}</pre> : null}
        </section>
      ) : null}
      <section>
        <h2>stdout{e.stdout_truncated ? ' (truncated)' : ''}</h2>
        <pre className="output" data-testid="stdout" tabIndex={0}>
          {e.stdout}
        </pre>
        <h2>stderr{e.stderr_truncated ? ' (truncated)' : ''}</h2>
        <pre className="output stderr" data-testid="stderr" tabIndex={0}>
          {e.stderr}
        </pre>
      </section>
      {e.metrics ? (
        <section>
          <h2>Metrics</h2>
          <Fields
            rows={[
              ['Wall clock', `${e.metrics.duration_ms.toFixed(1)} ms`],
              ['CPU time', `${e.metrics.cpu_time_ms.toFixed(1)} ms`],
              ['Peak memory', `${e.metrics.peak_memory_mb.toFixed(1)} MiB`],
              ['Read', bytes(e.metrics.io_read_bytes)],
              ['Written', bytes(e.metrics.io_write_bytes)],
            ]}
          />
        </section>
      ) : null}
      {e.artifacts.length > 0 ? (
        <section>
          <h2>Artifacts</h2>
          <table aria-label="Artifacts">
            <thead>
              <tr>
                <th scope="col">Path</th>
                <th scope="col">Size</th>
                <th scope="col">SHA-256</th>
                <th scope="col">
                  <span className="sr-only">Download</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {e.artifacts.map((a, i) => (
                <tr key={i}>
                  <td>{a.path}</td>
                  <td>{bytes(a.size)}</td>
                  <td>
                    <code>{a.sha256.slice(0, 16)}…</code>
                  </td>
                  <td>
                    <button type="button" onClick={() => download(`/v1/executions/${e.id}/artifacts/${i}`, a.path.split('/').pop() || 'artifact')}>
                      Download
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      ) : null}
    </div>
  );
}
