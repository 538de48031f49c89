// API keys (admins): create one (its secret is shown once), revoke one.
import { useState } from 'react';
import { api, call, type Schemas } from '../api/client';
import { Action, Loading, PageTitle, ProblemView, Time, useLoad } from '../components/common';

type Role = 'admin' | 'developer' | 'app';

export function Keys() {
  const keys = useLoad(() => call(api.GET('/v1/keys')), []);
  const [name, setName] = useState('');
  const [role, setRole] = useState<Role>('developer');
  const [app, setApp] = useState('');
  const [error, setError] = useState<unknown>();
  const [created, setCreated] = useState<Schemas['CreatedKey']>();
  return (
    <>
      <PageTitle sub="Keys are stored as hashes: a secret is shown once, when it is made.">API keys</PageTitle>
      <form
        className="inline-form"
        aria-label="New key"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(undefined);
          setCreated(undefined);
          try {
            const body = role === 'app' ? { name, role, app } : { name, role: role as 'admin' | 'developer' };
            setCreated(await call(api.POST('/v1/keys', { body })));
            setName('');
            keys.reload();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <label htmlFor="key-name">Name</label>
        <input id="key-name" value={name} onChange={(e) => setName(e.target.value)} required />
        <label htmlFor="key-role">Role</label>
        <select id="key-role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
          <option value="developer">developer</option>
          <option value="app">app</option>
          <option value="admin">admin</option>
        </select>
        {role === 'app' ? (
          <>
            <label htmlFor="key-app">App</label>
            <input id="key-app" className="short" value={app} onChange={(e) => setApp(e.target.value)} required />
          </>
        ) : null}
        <button type="submit">Create key</button>
      </form>
      <ProblemView error={error} />
      {created ? (
        <div className="secret" role="status">
          <p>
            The secret of <strong>{created.key.name}</strong> ({created.key.role}), shown only now:
          </p>
          <code data-testid="new-secret">{created.secret}</code>
        </div>
      ) : null}
      <Loading state={keys}>
        {(list) => (
          <table aria-label="API keys">
            <thead>
              <tr>
                <th scope="col">Id</th>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">App</th>
                <th scope="col">Created</th>
                <th scope="col">Revoked</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((k) => (
                <tr key={k.id}>
                  <td>
                    <code>{k.id}</code>
                  </td>
                  <td>{k.name}</td>
                  <td>{k.role}</td>
                  <td>{k.app}</td>
                  <td>
                    <Time ms={k.created_at} />
                  </td>
                  <td>
                    <Time ms={k.revoked_at} />
                  </td>
                  <td>
                    {k.revoked_at ? null : (
                      <Action
                        label="Revoke"
                        className="danger"
                        confirm={`Revoke the key ${k.name} (${k.id})?`}
                        run={async () => {
                          await call(api.DELETE('/v1/keys/{id}', { params: { path: { id: k.id } } }));
                          keys.reload();
                        }}
                      />
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Loading>
    </>
  );
}
