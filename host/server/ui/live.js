// Following a subscription (Server-Sent Events) with pause and resume. A browser
// reconnects by itself after a lost connection, resuming after the last event id
// it saw (`Last-Event-ID`): nothing is missed and nothing comes twice.

import { explain } from './errors.js';

export class Follower {
  /**
   * `url(after)`: the subscription's URL, resuming after a position (or null).
   * `on`: handlers by SSE event name, given the parsed data and the event's id.
   * `status(text, state)`: what to tell the reader (`state`: live, paused or failed).
   * `probe()`: a plain request to the same resource, to say why a stream was refused.
   */
  constructor({ url, on, status, probe }) {
    Object.assign(this, { url, on, status, probe });
    this.source = null;
    this.last = null; // the id of the last event received: where a resume starts
  }

  get following() {
    return this.source !== null;
  }

  /** Starts (or resumes) after `after`, else after the last event received. */
  start(after = this.last) {
    this.stop();
    const source = new EventSource(this.url(after));
    this.source = source;
    this.status('Connecting…', 'live');
    for (const [name, handle] of Object.entries(this.on)) {
      source.addEventListener(name, (e) => {
        if (e.lastEventId) this.last = e.lastEventId;
        handle(JSON.parse(e.data), e.lastEventId);
      });
    }
    source.addEventListener('open', () => this.status('Live: connected', 'live'));
    source.addEventListener('error', (e) => this.failed(source, e));
  }

  /** Pauses: the stream is closed; `start()` resumes where it stopped. */
  pause() {
    this.stop();
    this.status('Paused: resume to catch up from where it stopped', 'paused');
  }

  stop() {
    this.source?.close();
    this.source = null;
  }

  failed(source, e) {
    if (source !== this.source) return;
    if (e.data) {
      // The server ended the stream with a problem (an `error` event).
      this.stop();
      const problem = JSON.parse(e.data);
      this.status(`Stopped: ${problem.title}. ${problem.detail ?? ''}`, 'failed');
    } else if (source.readyState === EventSource.CONNECTING) {
      this.status('Connection lost: reconnecting…', 'live');
    } else {
      // Refused (401, 403, 503…) or gone: a plain request says which.
      this.stop();
      this.probe().then(
        () => this.status('The live stream ended: follow again to reconnect.', 'failed'),
        (err) => {
          const { heading, text } = explain(err);
          this.status(`Stopped: ${heading}. ${text}`, 'failed');
        });
    }
  }
}
