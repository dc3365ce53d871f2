// Server-side rendering: the provider and every hook render to HTML in Node
// (no window, no document) without opening a connection.

import { renderToString } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { createClient } from '@switchyard/client';
import {
  SwitchyardProvider, useConnectionState, useDocument, useEvent, usePresence, usePublish, useRoom, useTyping,
} from '../src/index';

function Everything() {
  const state = useConnectionState();
  const room = useRoom('machine:m1');
  const doc = useDocument<{ notes?: string }>('shift', 'today');
  const users = usePresence();
  const { typing } = useTyping('document:shift:today');
  usePublish();
  useEvent('order:status_changed', (p) => p.newStatus);
  return (
    <p>
      {state.status}|{room.status}|{doc.status}|{String(doc.data.notes)}|{users.length}|{typing.length}
    </p>
  );
}

describe('SSR', () => {
  it('renders with no window and connects nothing', () => {
    expect(typeof window).toBe('undefined');
    const client = createClient({ url: 'http://127.0.0.1:9', token: 'x.eyJzdWIiOiJ1In0.y' });
    const html = renderToString(
      <SwitchyardProvider client={client}>
        <Everything />
      </SwitchyardProvider>,
    );
    expect(html).toBe('<p>disconnected<!-- -->|<!-- -->pending<!-- -->|<!-- -->loading<!-- -->|<!-- -->undefined<!-- -->|<!-- -->0<!-- -->|<!-- -->0</p>');
    expect(client.getState().status).toBe('disconnected');
    expect(client.stats()).toMatchObject({ socketListeners: 0, rooms: 0, documents: 0, presence: 0, typing: 0, handlers: 0 });
  });

  it('a provider given url and token creates its client lazily, still without connecting', () => {
    const html = renderToString(
      <SwitchyardProvider url="http://127.0.0.1:9" token={async () => 'never-called'}>
        <Everything />
      </SwitchyardProvider>,
    );
    expect(html).toContain('disconnected');
  });
});
