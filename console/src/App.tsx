// The console's shell: sign-in gate, navigation by role, and the routes.
import { lazy, Suspense } from 'react';
import { Link, Redirect, Route, Router, Switch, useLocation } from 'wouter';
import { NAV } from './nav';
import { SessionProvider, useSession } from './session';
import { SignIn } from './pages/SignIn';
import { ReviewQueue } from './pages/ReviewQueue';
import { Plugins } from './pages/Plugins';
import { PluginPage } from './pages/PluginPage';
import { VersionPage } from './pages/VersionPage';
import { Upload } from './pages/Upload';
import { Apps } from './pages/Apps';
import { AppPage } from './pages/AppPage';
import { Executions } from './pages/Executions';
import { ExecutionPage } from './pages/ExecutionPage';
import { Operations } from './pages/Operations';
import { Keys } from './pages/Keys';
import { Audit } from './pages/Audit';
import { Sessions } from './pages/Sessions';
import { SessionPage } from './pages/SessionPage';
import { Templates } from './pages/Templates';
import { TemplatePage } from './pages/TemplatePage';
import { SigningKeys } from './pages/SigningKeys';

// The generated forms (and their JSON-Schema validator) load only when used.
const TryPlugin = lazy(() => import('./pages/TryPlugin'));
const TemplateNew = lazy(() => import('./pages/TemplateNew'));

export function App() {
  return (
    <SessionProvider>
      <Router base="/console">
        <Shell />
      </Router>
    </SessionProvider>
  );
}

function Shell() {
  const { me, can, signOut } = useSession();
  const [location] = useLocation();
  if (!me) return <SignIn />;
  const home = can.review ? '/review' : can.listPlugins ? '/plugins' : me.app ? `/apps/${me.app}` : '/executions';
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link href="/" className="brand">
          Warden
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((n) => n.show(can)).map((n) => (
              <li key={n.href}>
                <Link
                  href={n.href === '/apps' && !can.manageApps && me.app ? `/apps/${me.app}` : n.href}
                  aria-current={location.startsWith(n.href) ? 'page' : undefined}
                >
                  {n.href === '/apps' && !can.manageApps ? 'My app' : n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <span data-testid="whoami">
            {me.name} <span className={`badge role-${me.role}`}>{me.role}</span>
            {me.app ? <span className="muted"> app {me.app}</span> : null}
          </span>
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Suspense fallback={<p className="muted">Loading…</p>}>
          <Switch>
            <Route path="/">
              <Redirect to={home} replace />
            </Route>
            <Route path="/review" component={ReviewQueue} />
            <Route path="/plugins" component={Plugins} />
            <Route path="/plugins/:code">{(p) => <PluginPage code={p.code} />}</Route>
            <Route path="/plugins/:code/versions/:version">{(p) => <VersionPage code={p.code} version={p.version} />}</Route>
            <Route path="/upload" component={Upload} />
            <Route path="/apps" component={Apps} />
            <Route path="/apps/:app">{(p) => <AppPage app={p.app} />}</Route>
            <Route path="/apps/:app/try/:code">{(p) => <TryPlugin app={p.app} code={p.code} />}</Route>
            <Route path="/executions" component={Executions} />
            <Route path="/executions/:id">{(p) => <ExecutionPage id={p.id} />}</Route>
            <Route path="/sessions" component={Sessions} />
            <Route path="/sessions/:id">{(p) => <SessionPage id={p.id} />}</Route>
            <Route path="/templates" component={Templates} />
            <Route path="/templates/new" component={TemplateNew} />
            <Route path="/templates/:id">{(p) => <TemplatePage id={p.id} />}</Route>
            <Route path="/signing-keys" component={SigningKeys} />
            <Route path="/operations" component={Operations} />
            <Route path="/keys" component={Keys} />
            <Route path="/audit" component={Audit} />
            <Route>
              <h1>Not found</h1>
              <p>
                No console page here. <Link href="/">Back to the start</Link>.
              </p>
            </Route>
          </Switch>
        </Suspense>
      </main>
    </div>
  );
}
