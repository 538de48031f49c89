// One version: its state, trust level and signature, and the moves its
// state allows for this role (submit, approve, approve as trusted when it
// is signed, reject with a reason, activate, deactivate, delete),
// the review report (permission changes first, then findings with
// file:line), the package's files with the findings marked, the manifest
// and schemas, and the version's audit trail.
import { useMemo, useState } from 'react';
import { unzipSync } from 'fflate';
import { Link, useLocation } from 'wouter';
import { api, call, download, fetchRaw, type Version } from '../api/client';
import { Action, Fields, Json, Loading, PageTitle, ProblemView, Status, Time, bytes, useLoad } from '../components/common';
import { SourceViewer } from '../components/SourceViewer';
import { useSession } from '../session';

interface Finding {
  rule: string;
  severity: string;
  file: string;
  line: number;
  message: string;
}
interface PermissionChange {
  field: string;
  from: string;
  to: string;
}
interface Report {
  permission_changes?: PermissionChange[];
  findings?: Finding[];
  summary?: { critical: number; warning: number; info: number };
  has_critical?: boolean;
}

type Tab = 'report' | 'files' | 'manifest' | 'history';

export function VersionPage({ code, version }: { code: string; version: string }) {
  const path = { code, version };
  const v = useLoad(() => call(api.GET('/v1/plugins/{code}/versions/{version}', { params: { path } })), [code, version]);
  const [tab, setTab] = useState<Tab>('report');
  const [focus, setFocus] = useState<{ file: string; line?: number }>();
  const tabs: [Tab, string][] = [
    ['report', 'Review report'],
    ['files', 'Files'],
    ['manifest', 'Manifest and schemas'],
    ['history', 'History'],
  ];
  return (
    <>
      <PageTitle>{`${code} ${version}`}</PageTitle>
      <p>
        <Link href={`/plugins/${code}`}>All versions of {code}</Link>
      </p>
      <Loading state={v}>
        {(ver) => (
          <>
            <Fields
              rows={[
                ['State', <Status value={ver.status} />],
                ['Reason', ver.status_reason],
                ['Runtime', ver.runtime],
                ['Trust level', <Status value={ver.trust_level} />],
                ['Signed by', ver.signed_by ? <code>{ver.signed_by}</code> : <span className="muted">not signed</span>],
                ['Package', bytes(ver.package_size)],
                ['SHA-256', <code className="hash">{ver.package_sha256}</code>],
                ['Uploaded by', ver.uploaded_by],
                ['Created', <Time ms={ver.created_at} />],
                ['Changed', <Time ms={ver.updated_at} />],
              ]}
            />
            <Moves ver={ver} reload={v.reload} />
            <div className="tabs" role="tablist" aria-label="Version details">
              {tabs.map(([id, label]) => (
                <button
                  key={id}
                  type="button"
                  role="tab"
                  id={`tab-${id}`}
                  aria-selected={tab === id}
                  aria-controls={`panel-${id}`}
                  onClick={() => setTab(id)}
                >
                  {label}
                </button>
              ))}
            </div>
            <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`}>
              {tab === 'report' ? (
                <ReportView
                  ver={ver}
                  onOpen={(file, line) => {
                    setFocus({ file, line });
                    setTab('files');
                  }}
                />
              ) : null}
              {tab === 'files' ? <Files ver={ver} focus={focus} onSelect={(file) => setFocus({ file })} /> : null}
              {tab === 'manifest' ? <ManifestView code={code} version={version} /> : null}
              {tab === 'history' ? <History code={code} version={version} /> : null}
            </div>
          </>
        )}
      </Loading>
    </>
  );
}

/** Approve a signed version as trusted: the server checks its signature again. */
export function approveTrusted(ver: Version) {
  return call(
    api.POST('/v1/plugins/{code}/versions/{version}/approve', {
      params: { path: { code: ver.plugin, version: ver.version } },
      body: { trust_level: 'trusted' },
    }),
  );
}

function Moves({ ver, reload }: { ver: Version; reload: () => void }) {
  const { can } = useSession();
  const [, navigate] = useLocation();
  const [reason, setReason] = useState('');
  const path = { code: ver.plugin, version: ver.version };
  const move = (m: 'submit' | 'approve' | 'activate' | 'deactivate') => async () => {
    await call(api.POST(`/v1/plugins/{code}/versions/{version}/${m}`, { params: { path } }));
    reload();
  };
  return (
    <section className="moves" aria-label="Actions">
      {can.upload && ver.status === 'draft' ? <Action label="Submit for review" className="primary" run={move('submit')} /> : null}
      {can.review && ver.status === 'pending' ? <Action label="Approve" className="primary" run={move('approve')} /> : null}
      {can.review && ver.status === 'pending' && ver.signed_by ? (
        <Action
          label="Approve as trusted"
          run={async () => {
            await approveTrusted(ver);
            reload();
          }}
        />
      ) : null}
      {can.upload && ver.status === 'inactive' ? <Action label="Activate" run={move('activate')} /> : null}
      {can.upload && ver.status === 'active' ? <Action label="Deactivate" run={move('deactivate')} /> : null}
      {can.upload ? <Action label="Download package" run={() => download(`/v1/plugins/${ver.plugin}/versions/${ver.version}/package`, `${ver.plugin}-${ver.version}.zip`)} /> : null}
      {can.upload ? (
        <Action
          label="Delete version"
          className="danger"
          confirm={`Delete ${ver.plugin} ${ver.version}? This cannot be undone.`}
          run={async () => {
            await call(api.DELETE('/v1/plugins/{code}/versions/{version}', { params: { path } }));
            navigate(`/plugins/${ver.plugin}`);
          }}
        />
      ) : null}
      {can.review && ver.status === 'pending' ? (
        <form
          className="reject"
          onSubmit={(e) => e.preventDefault()}
          aria-label="Reject"
        >
          <label htmlFor="reject-reason">Reason for rejecting (shown to the developer, required)</label>
          <textarea id="reject-reason" value={reason} onChange={(e) => setReason(e.target.value)} rows={2} />
          <Action
            label="Reject"
            className="danger"
            disabled={!reason.trim()}
            run={async () => {
              await call(api.POST('/v1/plugins/{code}/versions/{version}/reject', { params: { path }, body: { reason } }));
              setReason('');
              reload();
            }}
          />
        </form>
      ) : null}
    </section>
  );
}

function ReportView({ ver, onOpen }: { ver: Version; onOpen: (file: string, line: number) => void }) {
  const path = { code: ver.plugin, version: ver.version };
  const report = useLoad(
    () => (ver.report_summary ? call(api.GET('/v1/plugins/{code}/versions/{version}/report', { params: { path } })) : Promise.resolve(null)),
    [ver.plugin, ver.version, ver.revision],
  );
  return (
    <Loading state={report}>
      {(raw) => {
        if (!raw) return <p className="muted">No report yet: the report is written when the version is submitted for review.</p>;
        const r = raw as Report;
        const changes = r.permission_changes ?? [];
        const findings = r.findings ?? [];
        return (
          <>
            {r.has_critical ? (
              <p className="problem" role="note">
                This version has critical findings.
              </p>
            ) : null}
            <h2>Permission changes against the last active version</h2>
            {changes.length === 0 ? (
              <p className="muted">None: it asks for nothing the last active version did not.</p>
            ) : (
              <table aria-label="Permission changes">
                <thead>
                  <tr>
                    <th scope="col">Field</th>
                    <th scope="col">Before</th>
                    <th scope="col">After</th>
                  </tr>
                </thead>
                <tbody>
                  {changes.map((c, i) => (
                    <tr key={i}>
                      <td>
                        <code>{c.field}</code>
                      </td>
                      <td>{c.from}</td>
                      <td>
                        <strong>{c.to}</strong>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            <h2>
              Findings{' '}
              <span className="muted">
                ({r.summary?.critical ?? 0} critical, {r.summary?.warning ?? 0} warning, {r.summary?.info ?? 0} info)
              </span>
            </h2>
            {findings.length === 0 ? (
              <p className="muted">No findings.</p>
            ) : (
              <table aria-label="Findings">
                <thead>
                  <tr>
                    <th scope="col">Severity</th>
                    <th scope="col">Rule</th>
                    <th scope="col">Where</th>
                    <th scope="col">Why</th>
                  </tr>
                </thead>
                <tbody>
                  {findings.map((f, i) => (
                    <tr key={i} className={`sev-row-${f.severity}`}>
                      <td>
                        <span className={`badge sev-${f.severity}`}>{f.severity}</span>
                      </td>
                      <td>
                        <code>{f.rule}</code>
                      </td>
                      <td>
                        <button type="button" className="link" onClick={() => onOpen(f.file, f.line)}>
                          {f.file}:{f.line}
                        </button>
                      </td>
                      <td className="wrap">{f.message}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </>
        );
      }}
    </Loading>
  );
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function Files({ ver, focus, onSelect }: { ver: Version; focus?: { file: string; line?: number }; onSelect: (file: string) => void }) {
  const path = { code: ver.plugin, version: ver.version };
  // The package as uploaded (verified against its hash by the server), unzipped here.
  const pkg = useLoad(async () => {
    const r = await fetchRaw(`/v1/plugins/${encodeURIComponent(ver.plugin)}/versions/${encodeURIComponent(ver.version)}/package`);
    return unzipSync(new Uint8Array(await r.arrayBuffer()));
  }, [ver.package_sha256]);
  const report = useLoad(
    () => (ver.report_summary ? call(api.GET('/v1/plugins/{code}/versions/{version}/report', { params: { path } })) : Promise.resolve(null)),
    [ver.plugin, ver.version, ver.revision],
  );
  const findings = ((report.data as Report | null)?.findings ?? []) as Finding[];
  const selected = focus?.file ?? ver.files[0]?.path;
  const text = useMemo(() => {
    const bytes = selected ? pkg.data?.[selected] : undefined;
    if (!bytes) return undefined;
    try {
      return decoder.decode(bytes);
    } catch {
      return null;
    }
  }, [pkg.data, selected]);
  return (
    <div className="files">
      <ul className="file-list" aria-label="Package files">
        {ver.files.map((f) => {
          const n = findings.filter((x) => x.file === f.path).length;
          return (
            <li key={f.path}>
              <button type="button" className="link" aria-current={f.path === selected ? 'true' : undefined} onClick={() => onSelect(f.path)}>
                {f.path}
              </button>{' '}
              <span className="muted">
                {bytes(f.size)}
                {f.executable ? ', executable' : ''}
                {n ? `, ${n} finding${n > 1 ? 's' : ''}` : ''}
              </span>
            </li>
          );
        })}
      </ul>
      <div className="file-view">
        <ProblemView error={pkg.error} />
        {selected ? <h2>{selected}</h2> : null}
        {text === null ? <p className="muted">Binary file: download the package to read it.</p> : null}
        {text != null && selected ? (
          <SourceViewer
            path={selected}
            text={text}
            focusLine={focus?.line}
            marks={findings.filter((f) => f.file === selected).map((f) => ({ line: f.line, severity: f.severity, text: `${f.rule}: ${f.message}` }))}
          />
        ) : null}
      </div>
    </div>
  );
}

function ManifestView({ code, version }: { code: string; version: string }) {
  const m = useLoad(() => call(api.GET('/v1/plugins/{code}/versions/{version}/manifest', { params: { path: { code, version } } })), [code, version]);
  return (
    <Loading state={m}>
      {(manifest) => {
        const mf = manifest as Record<string, unknown>;
        return (
          <>
            <h2>Input schema</h2>
            <Json value={mf.input_schema ?? null} label="Input schema" />
            <h2>Output schema</h2>
            <Json value={mf.output_schema ?? null} label="Output schema" />
            <h2>Manifest</h2>
            <Json value={manifest} label="Manifest" />
          </>
        );
      }}
    </Loading>
  );
}

function History({ code, version }: { code: string; version: string }) {
  const h = useLoad(() => call(api.GET('/v1/plugins/{code}/versions/{version}/audit', { params: { path: { code, version } } })), [code, version]);
  return (
    <Loading state={h}>
      {(events) => (
        <table aria-label="Version history">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">What</th>
              <th scope="col">Change</th>
              <th scope="col">Reason</th>
            </tr>
          </thead>
          <tbody>
            {events.map((a) => (
              <tr key={a.id}>
                <td>
                  <Time ms={a.at} />
                </td>
                <td>{a.actor}</td>
                <td>{a.action}</td>
                <td>{a.from_status || a.to_status ? `${a.from_status ?? '—'} → ${a.to_status ?? '—'}` : ''}</td>
                <td className="wrap">{a.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Loading>
  );
}
