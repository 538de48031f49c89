// One app: its installations (pinned to a version or following the latest
// active one), installing a plugin (admins), and trying an installed plugin.
import { useState } from 'react';
import { Link } from 'wouter';
import { api, call, type Installation } from '../api/client';
import { Action, Fields, Loading, PageTitle, ProblemView, Time, useLoad } from '../components/common';
import { useSession } from '../session';

export function AppPage({ app }: { app: string }) {
  const { can } = useSession();
  const info = useLoad(() => call(api.GET('/v1/apps/{app}', { params: { path: { app } } })), [app]);
  const inst = useLoad(() => call(api.GET('/v1/apps/{app}/installations', { params: { path: { app } } })), [app]);
  return (
    <>
      <PageTitle>{`App ${app}`}</PageTitle>
      <Loading state={info}>
        {(a) => (
          <Fields
            rows={[
              ['Name', a.name],
              ['Created', <Time ms={a.created_at} />],
              ['Executions', <Link href={`/executions?app=${encodeURIComponent(a.id)}`}>this app's executions</Link>],
            ]}
          />
        )}
      </Loading>
      <h2>Installed plugins</h2>
      <Loading state={inst}>
        {(list) =>
          list.length === 0 ? (
            <p className="muted">Nothing installed.</p>
          ) : (
            <table aria-label="Installations">
              <thead>
                <tr>
                  <th scope="col">Plugin</th>
                  <th scope="col">Version</th>
                  <th scope="col">Installed</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {list.map((i) => (
                  <InstallationRow key={i.id} i={i} admin={can.manageApps} reload={inst.reload} />
                ))}
              </tbody>
            </table>
          )
        }
      </Loading>
      {can.manageApps ? <Install app={app} reload={inst.reload} /> : null}
    </>
  );
}

function InstallationRow({ i, admin, reload }: { i: Installation; admin: boolean; reload: () => void }) {
  const [pin, setPin] = useState(i.pinned_version ?? '');
  const path = { app: i.app, plugin: i.plugin };
  return (
    <tr>
      <td>{admin ? <Link href={`/plugins/${i.plugin}`}>{i.plugin}</Link> : i.plugin}</td>
      <td>{i.pinned_version ? `pinned to ${i.pinned_version}` : 'follows the latest active version'}</td>
      <td>
        <Time ms={i.created_at} />
      </td>
      <td className="row-actions">
        <Link href={`/apps/${i.app}/try/${i.plugin}`} className="button">
          Try
        </Link>
        {admin ? (
          <>
            <label className="sr-only" htmlFor={`pin-${i.id}`}>
              Version to pin {i.plugin} to
            </label>
            <input id={`pin-${i.id}`} className="short" value={pin} onChange={(e) => setPin(e.target.value)} placeholder="1.0.0" />
            <Action
              label="Pin"
              disabled={!pin.trim()}
              run={async () => {
                await call(api.PUT('/v1/apps/{app}/installations/{plugin}', { params: { path }, body: { version: pin.trim() } }));
                reload();
              }}
            />
            <Action
              label="Follow latest"
              disabled={!i.pinned_version}
              run={async () => {
                await call(api.PUT('/v1/apps/{app}/installations/{plugin}', { params: { path }, body: { version: null } }));
                setPin('');
                reload();
              }}
            />
            <Action
              label="Uninstall"
              className="danger"
              confirm={`Uninstall ${i.plugin} from ${i.app}?`}
              run={async () => {
                await call(api.DELETE('/v1/apps/{app}/installations/{plugin}', { params: { path } }));
                reload();
              }}
            />
          </>
        ) : null}
      </td>
    </tr>
  );
}

function Install({ app, reload }: { app: string; reload: () => void }) {
  const [plugin, setPlugin] = useState('');
  const [version, setVersion] = useState('');
  const [error, setError] = useState<unknown>();
  return (
    <>
      <h2>Install a plugin</h2>
      <form
        className="inline-form"
        aria-label="Install a plugin"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(undefined);
          try {
            await call(
              api.POST('/v1/apps/{app}/installations', {
                params: { path: { app } },
                body: { plugin: plugin.trim(), version: version.trim() || undefined },
              }),
            );
            setPlugin('');
            setVersion('');
            reload();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <label htmlFor="install-plugin">Plugin code</label>
        <input id="install-plugin" value={plugin} onChange={(e) => setPlugin(e.target.value)} placeholder="vendor.greeting.say_hello" required />
        <label htmlFor="install-version">Pin to version (empty: follow the latest active)</label>
        <input id="install-version" className="short" value={version} onChange={(e) => setVersion(e.target.value)} placeholder="1.0.0" />
        <button type="submit">Install</button>
      </form>
      <ProblemView error={error} />
    </>
  );
}
