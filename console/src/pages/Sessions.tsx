// Sessions (admins: every app's; app keys: their own): start one from a
// template, and the list with each session's state, template, resources,
// idle time and app, one cursor page at a time.
import { useState } from 'react';
import { Link, useLocation } from 'wouter';
import { api, call, type App, type Session } from '../api/client';
import { CursorList } from '../components/CursorList';
import { PageTitle, ProblemView, Status, Time, duration, useLoad, useNow } from '../components/common';
import { useSession } from '../session';

const STATUSES = ['creating', 'running', 'terminated', 'expired', 'failed', 'lost'] as const;
type StatusName = (typeof STATUSES)[number];

/** A session's resources in one line. */
export function resources(s: Session): string {
  const r = s.resources;
  return `${r.cpu_cores} CPU, ${r.memory_mb} MiB memory, ${r.disk_mb} MiB disk, ${r.pids} processes`;
}

/** How long a live session has been idle (ended sessions are not idle). */
export function idle(s: Session, now: number): string {
  if (s.status !== 'running' && s.status !== 'creating') return '—';
  return duration(now - s.last_active_at);
}

export function Sessions() {
  const { me } = useSession();
  const isAdmin = me?.role === 'admin';
  const now = useNow(5000);
  const templates = useLoad(() => call(api.GET('/v1/templates', { params: { query: { limit: 500 } } })), []);
  const apps = useLoad(() => (isAdmin ? call(api.GET('/v1/apps')) : Promise.resolve<App[]>([])), [isAdmin]);
  const [template, setTemplate] = useState('python-basic');
  const [app, setApp] = useState('');
  const [creating, setCreating] = useState(false);
  const [error, setError] = useState<unknown>();
  const [status, setStatus] = useState<'' | StatusName>('');
  const [, navigate] = useLocation();
  const chosenApp = app || apps.data?.[0]?.id || '';
  return (
    <>
      <PageTitle sub="A session is a long-lived box: run code in it again and again, and move files in and out.">Sessions</PageTitle>
      <form
        className="inline-form"
        aria-label="New session"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(undefined);
          setCreating(true);
          try {
            const s = await call(api.POST('/v1/sessions', { body: { template, ...(isAdmin ? { app: chosenApp } : {}) } }));
            navigate(`/sessions/${s.id}`);
          } catch (err) {
            setError(err);
          } finally {
            setCreating(false);
          }
        }}
      >
        <label htmlFor="session-template">Template</label>
        <select id="session-template" value={template} onChange={(e) => setTemplate(e.target.value)}>
          {(templates.data?.items.map((t) => [t.id, `${t.id} (${t.runtime})`]) ?? [['python-basic', 'python-basic']]).map(([id, label]) => (
            <option key={id} value={id}>
              {label}
            </option>
          ))}
        </select>
        {isAdmin ? (
          <>
            <label htmlFor="session-app">App</label>
            <select id="session-app" value={chosenApp} onChange={(e) => setApp(e.target.value)} required>
              {(apps.data ?? []).map((a) => (
                <option key={a.id} value={a.id}>
                  {a.id}
                </option>
              ))}
            </select>
          </>
        ) : null}
        <button type="submit" className="primary" disabled={creating || (isAdmin && !chosenApp)}>
          {creating ? 'Starting the session…' : 'Create session'}
        </button>
      </form>
      {isAdmin && apps.data && apps.data.length === 0 ? (
        <p className="muted">
          A session belongs to an app: <Link href="/apps">create one</Link> first.
        </p>
      ) : null}
      <ProblemView error={error ?? templates.error ?? apps.error} />
      <div className="filters">
        <label htmlFor="session-status">Status</label>
        <select id="session-status" value={status} onChange={(e) => setStatus(e.target.value as '' | StatusName)}>
          <option value="">any</option>
          {STATUSES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </div>
      <CursorList<Session>
        label="Sessions"
        filterKey={status}
        empty="No sessions."
        rowKey={(s) => s.id}
        load={(cursor) => call(api.GET('/v1/sessions', { params: { query: { status: status || undefined, cursor, limit: 50 } } }))}
        columns={[
          { header: 'Id', cell: (s) => <Link href={`/sessions/${s.id}`}>{s.id}</Link> },
          { header: 'State', cell: (s) => <Status value={s.status} /> },
          { header: 'Template', cell: (s) => s.template },
          { header: 'Resources', cell: (s) => resources(s), className: 'wrap' },
          { header: 'Idle', cell: (s) => idle(s, now) },
          { header: 'App', cell: (s) => s.app },
          { header: 'Executions', cell: (s) => s.executions },
          { header: 'Created', cell: (s) => <Time ms={s.created_at} /> },
        ]}
      />
    </>
  );
}
