// Errors shown, not hidden: each kind gets a clear message and what to do next.

import { session } from './api.js';
import { h } from './dom.js';

/** A heading and a sentence for an ApiError (or any error). */
export function explain(err) {
  const p = err.problem ?? { detail: String(err.message ?? err) };
  const detail = p.detail ?? '';
  const said = detail ? ` The server said: ${detail}` : '';
  switch (err.status) {
    case 0:
      return { heading: p.title, text: p.detail };
    case 401:
      return {
        heading: 'Sign-in needed',
        text: `Sign in with an access token for this server: the page trades it for a session cookie and does not keep it.${said}`,
      };
    case 403:
      return { heading: 'Not allowed', text: `Sign in with a token that covers this, or ask for one.${said}` };
    case 503: {
      const wait = err.retryAfter ? ` Retry in ${err.retryAfter} s.` : ' Retry in a moment.';
      return { heading: `The server is busy: ${p.title ?? 'unavailable'}`, text: `${detail}${wait}` };
    }
    default:
      return { heading: p.title ?? `Error ${err.status ?? ''}`.trim(), text: detail };
  }
}

/**
 * An alert for a failed request. A 401 or 403 comes with the sign-in form
 * (`onSignedIn` runs after it worked); a lost connection or a busy server with a
 * retry button (`onRetry`).
 */
export function errorBox(err, { onRetry, onSignedIn } = {}) {
  const { heading, text } = explain(err);
  const box = h('section', { class: 'problem', role: 'alert' }, h('h2', {}, heading), text && h('p', {}, text));
  if ((err.status === 401 || err.status === 403) && onSignedIn) box.append(signInForm(onSignedIn));
  if ((err.status === 0 || err.status >= 500) && onRetry) {
    box.append(h('button', { type: 'button', onclick: onRetry }, 'Retry'));
  }
  return box;
}

let forms = 0;

/** The sign-in form: a token, exchanged for a session cookie (POST /v1/session). */
function signInForm(onSignedIn) {
  const id = `token-${++forms}`;
  const input = h('input', { id, name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const message = h('p', { class: 'form-message', role: 'status' });
  const form = h('form', { class: 'sign-in', 'aria-label': 'Sign in' },
    h('label', { for: id }, 'Access token'), input,
    h('button', {}, 'Sign in'), message);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    message.textContent = 'Signing in…';
    try {
      await session.signIn(input.value.trim());
      input.value = '';
      message.textContent = 'Signed in.';
      document.dispatchEvent(new CustomEvent('sf:session'));
      onSignedIn();
    } catch (err) {
      message.textContent = err.status === 401
        ? 'Refused: this token is not known to this server.'
        : `Refused: ${explain(err).heading}. ${explain(err).text}`;
      input.focus();
    }
  });
  return form;
}

/**
 * A reducer's rejection or failure (422 `reducer-rejected` / `reducer-failed`): which
 * reducer, on which event, and its own message, all as text. `onShow(revision)`
 * moves to the failing event.
 */
export function failureBox(err, onShow) {
  const failure = err.problem.reducer ?? {};
  const plugin = failure.plugin ? `${failure.plugin.name}@${failure.plugin.version}` : 'The reducer';
  const event = failure.event ?? {};
  const cause = failure.cause ?? {};
  const where = event.scope === 'event'
    ? `event #${event.revision} (${event.event_type}, id ${event.event_id})`
    : event.scope === 'batch' ? `the events #${event.first_revision}–#${event.last_revision}` : 'this history';
  const said = cause.message ?? (cause.kind === 'timeout' ? `it ran over its ${cause.limit} ms limit`
    : cause.kind === 'out-of-memory' ? `it asked for ${cause.requested} bytes, over its ${cause.limit} byte limit` : null);
  return h('section', { class: 'problem failure', role: 'alert' },
    h('h3', {}, err.problem.title ?? 'The reducer failed'),
    h('p', {}, `${plugin} ${cause.kind === 'rejected' ? `rejected ${where}` : `failed on ${where}`}`,
      cause.reason ? ` (${cause.reason})` : '', '.'),
    said && h('p', {}, 'Its message:'),
    said && h('pre', { class: 'message', role: 'region', tabindex: 0, 'aria-label': "The reducer's message" }, said),
    event.scope === 'event' && onShow &&
      h('button', { type: 'button', onclick: () => onShow(event.revision) }, `Show event #${event.revision}`));
}

/** Whether an error is a reducer's rejection or failure. */
export const isReducerFailure = (err) => err?.status === 422 && err.problem?.reducer != null;
