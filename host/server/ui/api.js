// The API under /v1, as the page uses it: paths, requests, errors and the browser
// session. Every error becomes an ApiError holding the server's problem+json.

const enc = encodeURIComponent;

/** `?a=1&b=2` of the parameters that are set (or ''). */
function query(params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}

const aggregate = (type, id) => `/v1/aggregates/${enc(type)}/${enc(id)}`;
const group = (type, name) => `/v1/groups/${enc(type)}/${enc(name)}`;

export const paths = {
  types: () => '/v1/types',
  ids: (type, params) => `/v1/aggregates/${enc(type)}${query(params)}`,
  aggregate,
  events: (type, id, params) => `${aggregate(type, id)}/events${query(params)}`,
  state: (type, id, params) => `${aggregate(type, id)}/state${query(params)}`,
  follow: (type, id, params) => `${aggregate(type, id)}/subscribe${query(params)}`,
  followCategory: (type, params) => `/v1/categories/${enc(type)}/subscribe${query(params)}`,
  plugins: (type) => `/v1/plugins${query({ type })}`,
  activations: (type) => `/v1/plugins/${enc(type)}/history`,
  verify: (type, sample) => `/v1/plugins/verify${query({ type, sample })}`,
  session: () => '/v1/session',
  groups: () => '/v1/groups',
  group,
  parked: (type, name, params) => `${group(type, name)}/parked${query(params)}`,
};

/** A failed request: `status` 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

const LOST = {
  title: 'Connection lost',
  detail: 'The server could not be reached: check that it is running and the network is up, then retry.',
};

/** One request: `{data, headers, status}`, or an ApiError. */
export async function request(method, path, { body, headers = {} } = {}) {
  let res;
  let data;
  try {
    res = await fetch(path, { method, body, headers: { Accept: 'application/json', ...headers } });
    const type = res.headers.get('content-type') ?? '';
    data = res.status === 204 ? null : type.includes('json') ? await res.json() : await res.text();
  } catch {
    // Cut off before the answer, or while reading it (an error's body is optional).
    if (!res || res.ok) throw new ApiError(0, LOST);
    data = null;
  }
  if (res.status === 401 && !headers.Authorization) session.ended();
  if (!res.ok) {
    const problem = data && typeof data === 'object' ? data : { title: res.statusText, detail: data || '' };
    throw new ApiError(res.status, problem, res.headers.get('retry-after'));
  }
  return { data, headers: res.headers, status: res.status };
}

export const get = (path, options) => request('GET', path, options);

// The browser session. The cookie is HttpOnly: the page only keeps what the server
// said about it (role, types, expiry) to show it; the token itself is never kept.
const KEY = 'streamfold.session';

export const session = {
  /** `{role, types, expires_at}` of this tab's sign-in, or null. */
  current() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY));
    } catch {
      return null;
    }
  },

  async signIn(token) {
    const { data } = await request('POST', paths.session(), { headers: { Authorization: `Bearer ${token}` } });
    sessionStorage.setItem(KEY, JSON.stringify(data));
    return data;
  },

  async signOut() {
    sessionStorage.removeItem(KEY);
    await request('DELETE', paths.session());
  },

  /** The server no longer knows the session (expired, or its token was removed). */
  ended() {
    if (sessionStorage.getItem(KEY) === null) return;
    sessionStorage.removeItem(KEY);
    document.dispatchEvent(new CustomEvent('sf:session'));
  },
};
