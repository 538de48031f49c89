// Apps (admins): create one, open one to manage its installations.
import { useState } from 'react';
import { Link, useLocation } from 'wouter';
import { api, call } from '../api/client';
import { Loading, PageTitle, ProblemView, Time, useLoad } from '../components/common';

export function Apps() {
  const apps = useLoad(() => call(api.GET('/v1/apps')), []);
  const [id, setId] = useState('');
  const [name, setName] = useState('');
  const [error, setError] = useState<unknown>();
  const [, navigate] = useLocation();
  return (
    <>
      <PageTitle sub="An app is a tenant: it installs plugins and calls them with its own key.">Apps</PageTitle>
      <form
        className="inline-form"
        aria-label="New app"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(undefined);
          try {
            const a = await call(api.POST('/v1/apps', { body: { id: id.trim(), name: name.trim() } }));
            navigate(`/apps/${a.id}`);
          } catch (err) {
            setError(err);
          }
        }}
      >
        <label htmlFor="app-id">Id</label>
        <input id="app-id" value={id} onChange={(e) => setId(e.target.value)} pattern="[a-z][a-z0-9\-]{1,62}" placeholder="shop" required />
        <label htmlFor="app-name">Name</label>
        <input id="app-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="The shop" />
        <button type="submit">Create app</button>
      </form>
      <ProblemView error={error} />
      <Loading state={apps}>
        {(list) =>
          list.length === 0 ? (
            <p className="muted">No apps yet.</p>
          ) : (
            <table aria-label="Apps">
              <thead>
                <tr>
                  <th scope="col">Id</th>
                  <th scope="col">Name</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {list.map((a) => (
                  <tr key={a.id}>
                    <td>
                      <Link href={`/apps/${a.id}`}>{a.id}</Link>
                    </td>
                    <td>{a.name}</td>
                    <td>
                      <Time ms={a.created_at} />
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
