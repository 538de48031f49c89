// One template: its fields, its packages and dependency layer, and (admins)
// a build with its log streamed live, then the layer's record: status,
// error, what was installed and the log's end.
import { useState } from 'react';
import { Link } from 'wouter';
import { api, call, type Layer, type Schemas } from '../api/client';
import { LiveBuildLog } from '../components/LiveOutput';
import { Action, Fields, Json, Loading, PageTitle, ProblemView, Status, Time, bytes, duration, useLoad } from '../components/common';
import { useSession } from '../session';
import { layerState } from './Templates';

export function TemplatePage({ id }: { id: string }) {
  const { can } = useSession();
  const t = useLoad(() => call(api.GET('/v1/templates/{id}', { params: { path: { id } } })), [id]);
  const [build, setBuild] = useState<Schemas['BuildView']>();
  const [built, setBuilt] = useState<Layer>();
  const following = build?.status === 'queued' || build?.status === 'building';
  // The layer to show: the one a build just ended with, else the stored one.
  const shown = built ?? (build?.layer && !following ? build.layer : undefined);
  return (
    <>
      <PageTitle sub={t.data?.description ?? undefined}>{`Template ${id}`}</PageTitle>
      <p>
        <Link href="/templates">All templates</Link>
      </p>
      <Loading state={t}>
        {(tpl) => (
          <>
            <Fields
              rows={[
                ['Name', tpl.name],
                ['Runtime', tpl.runtime],
                ['Built-in', tpl.builtin ? 'yes' : 'no'],
                ['Revision', tpl.revision],
                ['Layer', layerState(tpl)],
                ['CPU', `${tpl.resources.cpu_cores} cores`],
                ['Memory', `${tpl.resources.memory_mb} MiB`],
                ['Disk', `${tpl.resources.disk_mb} MiB`],
                ['Processes', tpl.resources.pids],
                ['Idle timeout', duration(tpl.resources.idle_timeout_secs * 1000)],
                ['Longest life', duration(tpl.resources.max_lifetime_secs * 1000)],
                ['Network', tpl.network.mode === 'none' ? 'none' : tpl.network.allow.join(', ')],
                ['Created', <Time ms={tpl.created_at} />],
                ['Changed', <Time ms={tpl.updated_at} />],
              ]}
            />
            {can.manageTemplates && tpl.packages.length > 0 ? (
              <section className="moves" aria-label="Actions">
                <Action
                  label="Build"
                  className="primary"
                  run={async () => {
                    setBuilt(undefined);
                    const b = await call(api.POST('/v1/templates/{id}/build', { params: { path: { id } } }));
                    setBuild(b);
                    if (b.status !== 'queued' && b.status !== 'building') t.reload();
                  }}
                />
              </section>
            ) : null}
            {build ? (
              <p role="status">
                Build: <Status value={built?.status ?? build.status} />
              </p>
            ) : null}
            {build?.layer && following ? (
              <LiveBuildLog
                layer={build.layer.id}
                onResult={(l) => {
                  setBuilt(l);
                  t.reload();
                }}
              />
            ) : null}
            <h2>Packages</h2>
            {tpl.packages.length === 0 ? (
              <p className="muted">None: the standard library is all.</p>
            ) : (
              <table aria-label="Packages">
                <thead>
                  <tr>
                    <th scope="col">Ecosystem</th>
                    <th scope="col">Name</th>
                    <th scope="col">Version</th>
                    <th scope="col">Hashes</th>
                  </tr>
                </thead>
                <tbody>
                  {tpl.packages.map((p, i) => (
                    <tr key={i}>
                      <td>{p.ecosystem}</td>
                      <td>{p.name}</td>
                      <td>{p.version ?? <span className="muted">any</span>}</td>
                      <td>{p.hashes.length}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            {shown ? <LayerView layer={shown} /> : tpl.layer ? <StoredLayer id={tpl.layer} /> : null}
            <h2>Environment</h2>
            {Object.keys(tpl.env).length === 0 ? <p className="muted">No variables.</p> : <Json value={tpl.env} label="Environment" />}
            <h2>Seed files</h2>
            {tpl.files.length === 0 ? (
              <p className="muted">No files.</p>
            ) : (
              <ul>
                {tpl.files.map((f) => (
                  <li key={f.path}>
                    <code>{f.path}</code> <span className="muted">({f.encoding})</span>
                  </li>
                ))}
              </ul>
            )}
          </>
        )}
      </Loading>
    </>
  );
}

function StoredLayer({ id }: { id: string }) {
  const l = useLoad(() => call(api.GET('/v1/layers/{id}', { params: { path: { id } } })), [id]);
  return (
    <>
      <ProblemView error={l.error} />
      {l.data ? <LayerView layer={l.data} /> : null}
    </>
  );
}

/** A dependency layer's record: its state, what went wrong, what was installed, the log's end. */
function LayerView({ layer }: { layer: Layer }) {
  return (
    <section aria-label="Dependency layer">
      <h2>Dependency layer</h2>
      <Fields
        rows={[
          ['State', <Status value={layer.status} />],
          ['Id', <code className="hash">{layer.id}</code>],
          ['Interpreter', layer.interpreter],
          ['Index', layer.index],
          ['Size', bytes(layer.size_bytes)],
          ['Built by', layer.node],
          ['Built', <Time ms={layer.built_at} />],
        ]}
      />
      {layer.error ? (
        <div className="problem" role="alert">
          <strong>The build failed{layer.error.package ? ` at ${layer.error.package}` : ''}</strong>
          <p>{layer.error.message}</p>
        </div>
      ) : null}
      {layer.lock.length > 0 ? (
        <table aria-label="Installed">
          <thead>
            <tr>
              <th scope="col">Installed</th>
              <th scope="col">Version</th>
              <th scope="col">Hash</th>
            </tr>
          </thead>
          <tbody>
            {layer.lock.map((p, i) => (
              <tr key={i}>
                <td>{p.name}</td>
                <td>{p.version}</td>
                <td>
                  <code>{(p.sha256 ?? p.integrity ?? '').slice(0, 24)}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <h3>Its log (the end)</h3>
      <pre className="output" data-testid="layer-log" tabIndex={0}>
        {layer.log}
      </pre>
    </section>
  );
}
