// The explorer's own URLs: every view has one, so any of them can be linked to,
// bookmarked and opened cold.

const enc = encodeURIComponent;

export const links = {
  types: () => '/ui/',
  type: (type) => `/ui/types/${enc(type)}`,
  /** An aggregate, optionally `{revision}` or `{as_of}`, and `{compare}` (a reducer). */
  aggregate: (type, id, params = {}) => {
    const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v != null && v !== ''));
    const text = q.toString();
    return `/ui/aggregates/${enc(type)}/${enc(id)}${text ? `?${text}` : ''}`;
  },
};

/** Goes to a page of the explorer: a new history entry, or `replace` the current. */
export function navigate(href, { replace = false } = {}) {
  history[replace ? 'replaceState' : 'pushState'](null, '', href);
  document.dispatchEvent(new CustomEvent('sf:navigate'));
}

/** Names the view in the window's title (tabs, history, bookmarks). */
export function title(text) {
  document.title = text ? `${text} · Streamfold explorer` : 'Streamfold explorer';
}
