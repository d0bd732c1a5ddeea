// The explorer: a router over three views, the header's "open" form and session.
// Every view has its own URL under /ui/; links inside the page are followed
// without reloading it (history.pushState), and the back button works (popstate).

import { get, paths, session } from './api.js';
import { h } from './dom.js';
import { links, navigate, title } from './nav.js';
import { AggregateView } from './views/aggregate.js';
import { TypeView } from './views/type.js';
import { TypesView } from './views/types.js';

const main = document.getElementById('main');

/** `/ui/...` paths and the views that show them (segments are URL-decoded). */
const ROUTES = [
  { pattern: /^\/ui\/?$/, make: () => new TypesView(main) },
  { pattern: /^\/ui\/types\/([^/]+)\/?$/, make: ([type]) => new TypeView(main, type) },
  { pattern: /^\/ui\/aggregates\/([^/]+)\/([^/]+)\/?$/, make: ([type, id]) => new AggregateView(main, type, id) },
];

let current = null; // { key, view }

/** Shows the view of the current URL: the same view is updated (unless `fresh`),
 * another replaces it. */
function route({ focus = false, fresh = false } = {}) {
  const url = new URL(location.href);
  for (const { pattern, make } of ROUTES) {
    const m = url.pathname.match(pattern);
    if (!m) continue;
    const args = m.slice(1).map(decodeURIComponent);
    const key = `${pattern}:${args.join('\u0000')}`;
    if (current?.key === key && current.view.update && !fresh) {
      current.view.update(url);
      return;
    }
    current?.view.dispose?.();
    main.replaceChildren();
    current = { key, view: make(args) };
    current.view.start(url);
    if (focus) main.focus();
    return;
  }
  current?.view.dispose?.();
  current = null;
  title('No such page');
  main.replaceChildren(h('h1', {}, 'No such page'),
    h('p', {}, 'Nothing is shown at this address. ', h('a', { href: links.types() }, 'See the aggregate types.')));
}

// Links to /ui/ pages are followed in the page; a modified click opens a tab as usual.
document.addEventListener('click', (e) => {
  const a = e.target.closest?.('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui/') || a.target) return;
  e.preventDefault();
  if (url.href !== location.href) navigate(url.href);
});
window.addEventListener('popstate', () => route());
document.addEventListener('sf:navigate', () => route({ focus: true }));

// The header: open an aggregate by its type and id.
const open = document.getElementById('open');
open.addEventListener('submit', (e) => {
  e.preventDefault();
  const field = (name) => open.elements.namedItem(name).value.trim();
  navigate(links.aggregate(field('type'), field('id')));
});

/** Fills the open form's type suggestions (quietly: the views show any error). */
function suggestTypes() {
  get(paths.types()).then(
    ({ data }) => document.getElementById('known-types')
      .replaceChildren(...data.types.map((t) => h('option', { value: t.type }))),
    () => {});
}

/** The header's session: who is signed in, and sign-out. */
function showSession() {
  const box = document.getElementById('session');
  const s = session.current();
  if (!s) {
    box.replaceChildren();
    return;
  }
  const scope = s.types ? `types ${s.types.join(', ')}` : 'all types';
  box.replaceChildren(
    h('span', {}, `Signed in: ${s.role}, ${scope}`),
    h('button', {
      type: 'button',
      onclick: async () => {
        await session.signOut().catch(() => {});
        showSession();
        route({ fresh: true });
      },
    }, 'Sign out'));
}
document.addEventListener('sf:session', () => {
  showSession();
  suggestTypes();
});

showSession();
route();
suggestTypes();
