// Sign in with an API key. The key is kept in sessionStorage (this tab
// only, gone when it closes) and sent only as a header; it is never put in
// a URL, so it cannot leak through history, logs or a Referer.
import { useState } from 'react';
import { useSession } from '../session';
import { ProblemView } from '../components/common';

export function SignIn() {
  const { signIn } = useSession();
  const [key, setKey] = useState('');
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  return (
    <main id="main" className="signin">
      <h1>Warden console</h1>
      <p>Sign in with an API key. The console shows what the key's role may do.</p>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(undefined);
          try {
            await signIn(key);
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <label htmlFor="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autoComplete="off"
          spellCheck={false}
          placeholder="wk_…"
          value={key}
          onChange={(e) => setKey(e.target.value)}
          required
        />
        <button type="submit" disabled={busy || !key.trim()}>
          Sign in
        </button>
      </form>
      <ProblemView error={error} />
      <p className="muted small">
        The key stays in this browser tab for this session only. The first start of <code>warden serve</code> prints an admin key;{' '}
        <code>warden admin create-key</code> makes more.
      </p>
    </main>
  );
}
