// The review queue (admins): every pending version, oldest first, with its
// finding counts and signature; a signed one may be approved as trusted
// here (the report is on its page). The API has no cross-plugin "pending versions" list yet,
// so the queue is built from the plugin list and each plugin's versions
// (see docs/console.md).
import { Link } from 'wouter';
import { api, call, type Version } from '../api/client';
import { Action, Loading, PageTitle, Time, useLoad } from '../components/common';
import { approveTrusted } from './VersionPage';

export async function allPlugins() {
  const codes: string[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 100; i++) {
    const page = await call(api.GET('/v1/plugins', { params: { query: { limit: 500, cursor } } }));
    codes.push(...page.items.map((p) => p.code));
    cursor = page.next_cursor ?? undefined;
    if (!cursor) break;
  }
  return codes;
}

async function pending(): Promise<Version[]> {
  const codes = await allPlugins();
  const out: Version[] = [];
  // A few at a time: the queue should not flood the server.
  for (let i = 0; i < codes.length; i += 8) {
    const batch = await Promise.all(
      codes.slice(i, i + 8).map((code) => call(api.GET('/v1/plugins/{code}/versions', { params: { path: { code } } }))),
    );
    out.push(...batch.flat().filter((v) => v.status === 'pending'));
  }
  return out.sort((a, b) => a.updated_at - b.updated_at);
}

export function ReviewQueue() {
  const queue = useLoad(pending, []);
  return (
    <>
      <PageTitle sub="Pending versions, oldest first: the permission changes and findings of each are in its report.">Review queue</PageTitle>
      <Loading state={queue}>
        {(items) =>
          items.length === 0 ? (
            <p className="muted">Nothing waits for review.</p>
          ) : (
            <table aria-label="Pending versions">
              <thead>
                <tr>
                  <th scope="col">Plugin</th>
                  <th scope="col">Version</th>
                  <th scope="col">Runtime</th>
                  <th scope="col">Submitted</th>
                  <th scope="col">By</th>
                  <th scope="col">Findings</th>
                  <th scope="col">Signed by</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {items.map((v) => (
                  <tr key={v.id}>
                    <td>
                      <Link href={`/plugins/${v.plugin}/versions/${v.version}`}>{v.plugin}</Link>
                    </td>
                    <td>{v.version}</td>
                    <td>{v.runtime}</td>
                    <td>
                      <Time ms={v.updated_at} />
                    </td>
                    <td>{v.uploaded_by}</td>
                    <td>
                      <Counts summary={v.report_summary} />
                    </td>
                    <td>{v.signed_by ? <code>{v.signed_by}</code> : <span className="muted">not signed</span>}</td>
                    <td>
                      {v.signed_by ? (
                        <Action
                          label="Approve as trusted"
                          run={async () => {
                            await approveTrusted(v);
                            queue.reload();
                          }}
                        />
                      ) : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )
        }
      </Loading>
    </>
  );
}

export function Counts({ summary }: { summary: Version['report_summary'] }) {
  if (!summary) return <span className="muted">no report</span>;
  return (
    <span className="counts">
      <span className="sev-critical">{summary.critical} critical</span>, <span className="sev-warning">{summary.warning} warning</span>,{' '}
      <span className="sev-info">{summary.info} info</span>
    </span>
  );
}
