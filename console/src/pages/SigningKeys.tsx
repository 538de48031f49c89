// Signing keys (developers: their own; admins: anyone's): register a
// minisign public key that vouches for the owner's plugins, list, revoke.
// A version signed by a live key of its owner may be approved as trusted.
import { useState } from 'react';
import { api, call } from '../api/client';
import { Action, Loading, PageTitle, ProblemView, Time, useLoad } from '../components/common';
import { useSession } from '../session';

export function SigningKeys() {
  const { me } = useSession();
  const isAdmin = me?.role === 'admin';
  const [owner, setOwner] = useState('');
  const [shown, setShown] = useState('');
  const keys = useLoad(() => call(api.GET('/v1/signing-keys', { params: { query: { owner: shown || undefined } } })), [shown]);
  const [name, setName] = useState('');
  const [publicKey, setPublicKey] = useState('');
  const [error, setError] = useState<unknown>();
  return (
    <>
      <PageTitle sub="A version signed by a live key of its owner can be approved as trusted. Revoking a key makes every version it signed untrusted at once.">
        Signing keys
      </PageTitle>
      <form
        className="stack"
        aria-label="Register a key"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(undefined);
          try {
            await call(api.POST('/v1/signing-keys', { body: { name, public_key: publicKey.trim() } }));
            setName('');
            setPublicKey('');
            keys.reload();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <h2>Register a key</h2>
        <label htmlFor="signing-name">Name</label>
        <input id="signing-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={100} required placeholder="laptop" />
        <label htmlFor="signing-public-key">Public key</label>
        <p className="muted small" id="signing-public-key-help">
          The last line of the <code>.pub</code> file <code>warden plugin keygen</code> (or minisign) wrote: <code>RW…</code>, 56 characters. It is
          registered to you and vouches for the plugins you own.
        </p>
        <textarea
          id="signing-public-key"
          className="code-input"
          rows={2}
          value={publicKey}
          onChange={(e) => setPublicKey(e.target.value)}
          aria-describedby="signing-public-key-help"
          required
        />
        <div>
          <button type="submit" className="primary">
            Register key
          </button>
        </div>
      </form>
      <ProblemView error={error} />
      <h2>Keys</h2>
      {isAdmin ? (
        <form
          className="filters"
          aria-label="Filter keys"
          onSubmit={(e) => {
            e.preventDefault();
            setShown(owner.trim());
          }}
        >
          <label htmlFor="signing-owner">Owner</label>
          <input id="signing-owner" value={owner} onChange={(e) => setOwner(e.target.value)} placeholder="everyone" />
          <button type="submit">Apply</button>
        </form>
      ) : null}
      <Loading state={keys}>
        {(list) =>
          list.length === 0 ? (
            <p className="muted">No signing keys.</p>
          ) : (
            <table aria-label="Signing keys">
              <thead>
                <tr>
                  <th scope="col">Id</th>
                  <th scope="col">Name</th>
                  <th scope="col">Owner</th>
                  <th scope="col">Public key</th>
                  <th scope="col">Registered</th>
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
                    <td>{k.owner}</td>
                    <td>
                      <code>{k.public_key}</code>
                    </td>
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
                          confirm={`Revoke the signing key ${k.name} (${k.id})? Every version it signed becomes untrusted.`}
                          run={async () => {
                            await call(api.DELETE('/v1/signing-keys/{id}', { params: { path: { id: k.id } } }));
                            keys.reload();
                          }}
                        />
                      )}
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
