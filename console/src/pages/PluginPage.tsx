// One plugin: its versions with their states and trust levels, and its
// audit trail.
import { Link } from 'wouter';
import { api, call, type AuditEvent } from '../api/client';
import { CursorList } from '../components/CursorList';
import { Fields, Loading, PageTitle, Status, Time, useLoad } from '../components/common';
import { Counts } from './ReviewQueue';

export function PluginPage({ code }: { code: string }) {
  const plugin = useLoad(() => call(api.GET('/v1/plugins/{code}', { params: { path: { code } } })), [code]);
  const versions = useLoad(() => call(api.GET('/v1/plugins/{code}/versions', { params: { path: { code } } })), [code]);
  return (
    <>
      <PageTitle>{code}</PageTitle>
      <Loading state={plugin}>
        {(p) => (
          <Fields
            rows={[
              ['Name', p.name],
              ['Description', p.description],
              ['Owner', p.owner],
              ['Created', <Time ms={p.created_at} />],
              ['Updated', <Time ms={p.updated_at} />],
            ]}
          />
        )}
      </Loading>
      <h2>Versions</h2>
      <Loading state={versions}>
        {(vs) => (
          <table aria-label="Versions">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">State</th>
                <th scope="col">Runtime</th>
                <th scope="col">Trust</th>
                <th scope="col">Findings</th>
                <th scope="col">Uploaded by</th>
                <th scope="col">Changed</th>
              </tr>
            </thead>
            <tbody>
              {[...vs].reverse().map((v) => (
                <tr key={v.id}>
                  <td>
                    <Link href={`/plugins/${code}/versions/${v.version}`}>{v.version}</Link>
                  </td>
                  <td>
                    <Status value={v.status} />
                    {v.status_reason ? <span className="muted"> {v.status_reason}</span> : null}
                  </td>
                  <td>{v.runtime}</td>
                  <td>
                    <Status value={v.trust_level} />
                    {v.signed_by ? <span className="muted"> signed by {v.signed_by}</span> : null}
                  </td>
                  <td>
                    <Counts summary={v.report_summary} />
                  </td>
                  <td>{v.uploaded_by}</td>
                  <td>
                    <Time ms={v.updated_at} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Loading>
      <h2>History</h2>
      <CursorList<AuditEvent>
        label="Plugin history"
        filterKey={code}
        empty="No events."
        rowKey={(a) => a.id}
        load={(cursor) => call(api.GET('/v1/audit', { params: { query: { plugin: code, cursor, limit: 20 } } }))}
        columns={[
          { header: 'When', cell: (a) => <Time ms={a.at} /> },
          { header: 'Who', cell: (a) => a.actor },
          { header: 'What', cell: (a) => a.action },
          { header: 'Version', cell: (a) => a.version },
          { header: 'Change', cell: (a) => (a.from_status || a.to_status ? `${a.from_status ?? '—'} → ${a.to_status ?? '—'}` : '') },
          { header: 'Reason', cell: (a) => a.reason, className: 'wrap' },
        ]}
      />
    </>
  );
}
