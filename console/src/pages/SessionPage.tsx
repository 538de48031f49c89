// One session: its state, resources and idle time; its workspace as a
// file browser (list, folders, upload by drop or pick, download); code run
// in it with the output streamed live as it is written; its executions;
// snapshots (take, list, start a new session from one); and terminate,
// after a confirmation. Every name and every byte of output is text.
import { useState } from 'react';
import { Link, useLocation } from 'wouter';
import { api, call, download, filePath, uploadSessionFile, type Execution, type FileEntry, type Session, type Snapshot } from '../api/client';
import { CursorList } from '../components/CursorList';
import { Dropzone } from '../components/Dropzone';
import { ExecutionDetail } from '../components/ExecutionDetail';
import { LiveOutput } from '../components/LiveOutput';
import { Action, Fields, Loading, PageTitle, ProblemView, Status, Time, bytes, duration, useLoad, useNow } from '../components/common';
import { useSession } from '../session';
import { idle, resources } from './Sessions';

type Language = 'python' | 'javascript' | 'shell';
type RunMode = 'script' | 'repl';

const SAMPLES: Record<Language, string> = {
  python: "import os\nprint('files here:', sorted(os.listdir('.')))",
  javascript: "const fs = require('fs');\nconsole.log('files here:', fs.readdirSync('.').sort());",
  shell: 'ls -la',
};

export function SessionPage({ id }: { id: string }) {
  const s = useLoad(() => call(api.GET('/v1/sessions/{id}', { params: { path: { id } } })), [id]);
  const now = useNow();
  // Bumped after anything that changes the workspace or the lists.
  const [changes, setChanges] = useState(0);
  const changed = () => {
    setChanges((n) => n + 1);
    s.reload();
  };
  return (
    <>
      <PageTitle>{`Session ${id}`}</PageTitle>
      <p>
        <Link href="/sessions">All sessions</Link>
      </p>
      <Loading state={s}>
        {(ses) => {
          const live = ses.status === 'running';
          return (
            <>
              <Fields
                rows={[
                  ['State', <Status value={ses.status} />],
                  ['Reason', ses.status_reason],
                  ['App', ses.app],
                  ['Template', <Link href={`/templates/${ses.template}`}>{ses.template}</Link>],
                  ['Resources', resources(ses)],
                  ['Idle', idle(ses, now)],
                  ['Idle timeout', duration(ses.idle_timeout_secs * 1000)],
                  ['Expires', <Time ms={ses.expires_at} />],
                  ['Executions', ses.executions],
                  ['Node', ses.node],
                  ['Created', <Time ms={ses.created_at} />],
                  ['Ended', <Time ms={ses.ended_at} />],
                ]}
              />
              {live ? (
                <section className="moves" aria-label="Actions">
                  <Action
                    label="Terminate"
                    className="danger"
                    confirm={`Terminate the session ${ses.id}? Its box and workspace go; the record stays.`}
                    run={async () => {
                      await call(api.POST('/v1/sessions/{id}/terminate', { params: { path: { id } } }));
                      s.reload();
                    }}
                  />
                </section>
              ) : null}
              {live ? (
                <div className="session-grid">
                  <Files session={ses} changes={changes} changed={changed} />
                  <Run session={ses} changed={changed} />
                </div>
              ) : null}
              <h2>Executions</h2>
              <CursorList<Execution>
                label="Session executions"
                filterKey={`${id}:${changes}`}
                empty="No executions yet."
                rowKey={(e) => e.id}
                load={(cursor) => call(api.GET('/v1/sessions/{id}/executions', { params: { path: { id }, query: { cursor, limit: 20 } } }))}
                columns={[
                  { header: 'Id', cell: (e) => <Link href={`/executions/${e.id}`}>{e.id}</Link> },
                  { header: 'Status', cell: (e) => <Status value={e.status} /> },
                  { header: 'Language', cell: (e) => e.language },
                  { header: 'Runs as', cell: (e) => e.run_mode },
                  { header: 'Accepted', cell: (e) => <Time ms={e.created_at} /> },
                  { header: 'Duration', cell: (e) => (e.duration_ms == null ? '—' : `${e.duration_ms.toFixed(1)} ms`) },
                ]}
              />
              <Snapshots session={ses} changes={changes} changed={changed} />
            </>
          );
        }}
      </Loading>
    </>
  );
}

function Files({ session, changes, changed }: { session: Session; changes: number; changed: () => void }) {
  const [dir, setDir] = useState('');
  const [busy, setBusy] = useState<string>();
  const [folder, setFolder] = useState('');
  const [error, setError] = useState<unknown>();
  const list = useLoad(
    () => call(api.GET('/v1/sessions/{id}/files', { params: { path: { id: session.id }, query: { path: dir || undefined } } })),
    [session.id, dir, changes],
  );
  const parts = dir ? dir.split('/') : [];

  async function upload(file: File | undefined) {
    if (!file) return;
    const path = dir ? `${dir}/${file.name}` : file.name;
    setBusy(path);
    setError(undefined);
    try {
      await uploadSessionFile(session.id, path, file);
      changed();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(undefined);
    }
  }

  return (
    <section aria-label="Files">
      <h2>Files</h2>
      <nav className="breadcrumb" aria-label="Folder">
        <button type="button" className="link" onClick={() => setDir('')} aria-current={dir === '' ? 'location' : undefined}>
          workspace
        </button>
        {parts.map((p, i) => (
          <span key={i}>
            /{' '}
            <button
              type="button"
              className="link"
              onClick={() => setDir(parts.slice(0, i + 1).join('/'))}
              aria-current={i === parts.length - 1 ? 'location' : undefined}
            >
              {p}
            </button>
          </span>
        ))}
      </nav>
      <Loading state={list}>
        {(l) => (
          <>
            <table aria-label="Workspace files">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Size</th>
                  <th scope="col">Modified</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {l.entries.map((f: FileEntry) => (
                  <tr key={f.path}>
                    <td>
                      {f.kind === 'directory' ? (
                        <button type="button" className="link" onClick={() => setDir(f.path)}>
                          {f.name}/
                        </button>
                      ) : (
                        f.name
                      )}
                    </td>
                    <td>{f.kind}</td>
                    <td>{f.kind === 'file' ? bytes(f.size) : ''}</td>
                    <td>
                      <Time ms={f.modified_at} />
                    </td>
                    <td>
                      {f.kind === 'file' ? (
                        <Action
                          label="Download"
                          run={async () => {
                            await download(filePath(session.id, f.path), f.name);
                            changed();
                          }}
                        />
                      ) : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {l.entries.length === 0 ? <p className="muted">This folder is empty.</p> : null}
            {l.truncated ? <p className="muted">Only the first {l.entries.length} entries are listed.</p> : null}
          </>
        )}
      </Loading>
      <form
        className="inline-form"
        aria-label="Make a folder"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(undefined);
          const path = dir ? `${dir}/${folder.trim()}` : folder.trim();
          try {
            await call(api.POST('/v1/sessions/{id}/directories', { params: { path: { id: session.id } }, body: { path } }));
            setFolder('');
            setDir(path);
            changed();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <label htmlFor="session-folder">New folder</label>
        <input id="session-folder" value={folder} onChange={(e) => setFolder(e.target.value)} required />
        <button type="submit">Make folder</button>
      </form>
      <Dropzone
        id="session-file"
        testId="session-dropzone"
        prompt={`Drop a file here to upload it into ${dir ? dir : 'the workspace'}, or`}
        busy={busy ? `Uploading ${busy}…` : null}
        onFile={(f) => void upload(f)}
      />
      <ProblemView error={error} />
    </section>
  );
}

function Run({ session, changed }: { session: Session; changed: () => void }) {
  const [language, setLanguage] = useState<Language>('python');
  const [mode, setMode] = useState<RunMode>('script');
  const [code, setCode] = useState(SAMPLES.python);
  const [error, setError] = useState<unknown>();
  const [running, setRunning] = useState<string>();
  const [result, setResult] = useState<Execution>();

  async function run() {
    setError(undefined);
    setResult(undefined);
    setRunning(undefined);
    try {
      const accepted = await call(
        api.POST('/v1/sessions/{id}/executions', {
          params: { path: { id: session.id }, query: { mode: 'async' } },
          body: { language, mode, code },
        }),
      );
      setRunning(accepted.id);
    } catch (e) {
      setError(e);
    }
  }

  return (
    <section aria-label="Run code">
      <h2>Run code</h2>
      <form
        className="run-form"
        onSubmit={(e) => {
          e.preventDefault();
          void run();
        }}
      >
        <div className="row">
          <label htmlFor="run-language">Language</label>
          <select
            id="run-language"
            value={language}
            onChange={(e) => {
              const next = e.target.value as Language;
              if (code === SAMPLES[language]) setCode(SAMPLES[next]);
              if (next === 'shell') setMode('script');
              setLanguage(next);
            }}
          >
            <option value="python">Python</option>
            <option value="javascript">JavaScript</option>
            <option value="shell">Shell</option>
          </select>
          <label htmlFor="run-mode">Runs as</label>
          <select id="run-mode" value={mode} onChange={(e) => setMode(e.target.value as RunMode)}>
            <option value="script">a program (script)</option>
            {language !== 'shell' ? <option value="repl">a cell of the session's interpreter (repl)</option> : null}
          </select>
        </div>
        <label htmlFor="run-code">Code</label>
        <textarea id="run-code" className="code-input" rows={8} value={code} onChange={(e) => setCode(e.target.value)} spellCheck={false} />
        <div>
          <button type="submit" className="primary" disabled={!code.trim()}>
            Run
          </button>
        </div>
      </form>
      <ProblemView error={error} />
      {running ? (
        <LiveOutput
          id={running}
          onResult={(e) => {
            setResult(e);
            changed();
          }}
        />
      ) : null}
      {result ? (
        <section aria-label="Result">
          <h2>Result</h2>
          <ExecutionDetail execution={result} />
        </section>
      ) : null}
    </section>
  );
}

function Snapshots({ session, changes, changed }: { session: Session; changes: number; changed: () => void }) {
  const { me } = useSession();
  const [, navigate] = useLocation();
  return (
    <section aria-label="Snapshots">
      <h2>Snapshots</h2>
      <p className="muted">A snapshot saves the workspace; a new session can start from it.</p>
      {session.status === 'running' ? (
        <div className="moves">
          <Action
            label="Take a snapshot"
            run={async () => {
              await call(api.POST('/v1/sessions/{id}/snapshots', { params: { path: { id: session.id } } }));
              changed();
            }}
          />
        </div>
      ) : null}
      <CursorList<Snapshot>
        label="Snapshots"
        filterKey={`${session.id}:${changes}`}
        empty="No snapshots."
        rowKey={(x) => x.id}
        load={(cursor) => call(api.GET('/v1/snapshots', { params: { query: { session: session.id, cursor, limit: 20 } } }))}
        columns={[
          { header: 'Id', cell: (x) => <code>{x.id}</code> },
          { header: 'State', cell: (x) => <Status value={x.status} /> },
          { header: 'Why', cell: (x) => x.trigger },
          { header: 'Files', cell: (x) => x.files },
          { header: 'Size', cell: (x) => bytes(x.size_bytes) },
          { header: 'Taken', cell: (x) => <Time ms={x.created_at} /> },
          { header: 'Error', cell: (x) => x.error, className: 'wrap' },
          {
            header: 'Start from it',
            cell: (x) =>
              x.status === 'ready' ? (
                <Action
                  label="New session"
                  run={async () => {
                    const s = await call(api.POST('/v1/sessions', { body: { snapshot: x.id, ...(me?.role === 'admin' ? { app: x.app } : {}) } }));
                    navigate(`/sessions/${s.id}`);
                  }}
                />
              ) : null,
          },
        ]}
      />
    </section>
  );
}
