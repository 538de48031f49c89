// Who is signed in: the key's principal (GET /v1/me) and what its role may
// do. The console shows only what the role may do; the server decides
// anyway, so a hidden button is a courtesy, never the check.
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from 'react';
import { api, call, storeKey, storedKey, type Me } from './api/client';

export type Role = 'admin' | 'developer' | 'app';

/** What each role may do, as docs/api.md's role table says. */
export interface Can {
  review: boolean;
  listPlugins: boolean;
  upload: boolean;
  manageApps: boolean;
  run: boolean;
  keys: boolean;
  audit: boolean;
  operations: boolean;
  /** Open and use sessions (app keys: their own app's; admins: every app's). */
  sessions: boolean;
  /** Read templates (every role). */
  templates: boolean;
  /** Create templates and build them. */
  manageTemplates: boolean;
  /** Register and revoke signing keys (developers: their own). */
  signingKeys: boolean;
}

export function can(me: Me | null): Can {
  const role = me?.role as Role | undefined;
  return {
    review: role === 'admin',
    listPlugins: role === 'admin' || role === 'developer',
    upload: role === 'admin' || role === 'developer',
    manageApps: role === 'admin',
    run: role === 'admin' || role === 'app',
    keys: role === 'admin',
    audit: role === 'admin' || role === 'developer',
    operations: role === 'admin',
    sessions: role === 'admin' || role === 'app',
    templates: role === 'admin' || role === 'developer' || role === 'app',
    manageTemplates: role === 'admin',
    signingKeys: role === 'admin' || role === 'developer',
  };
}

interface SessionValue {
  me: Me | null;
  can: Can;
  signIn: (key: string) => Promise<void>;
  signOut: () => void;
}

const Ctx = createContext<SessionValue | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [me, setMe] = useState<Me | null>(null);
  const [ready, setReady] = useState(false);

  useEffect(() => {
    if (!storedKey()) {
      setReady(true);
      return;
    }
    call(api.GET('/v1/me'))
      .then(setMe)
      .catch(() => storeKey(null))
      .finally(() => setReady(true));
  }, []);

  const signIn = useCallback(async (key: string) => {
    storeKey(key.trim());
    try {
      setMe(await call(api.GET('/v1/me')));
    } catch (e) {
      storeKey(null);
      throw e;
    }
  }, []);

  const signOut = useCallback(() => {
    storeKey(null);
    setMe(null);
  }, []);

  if (!ready) return null;
  return <Ctx.Provider value={{ me, can: can(me), signIn, signOut }}>{children}</Ctx.Provider>;
}

export function useSession(): SessionValue {
  const v = useContext(Ctx);
  if (!v) throw new Error('useSession outside SessionProvider');
  return v;
}
