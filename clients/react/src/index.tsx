// React hooks over @switchyard/client. Rules (issue 12, item 2):
// - one client per provider, created without side effects; connected in an
//   effect (never during render: SSR-safe, no `window` outside effects);
// - state through useSyncExternalStore; the client's views are ref-counted
//   with a deferred release, so StrictMode's mount → unmount → mount neither
//   drops nor duplicates a subscription;
// - handlers through a latest-ref: no stale closures, no re-subscribe per render.

import {
  createContext, createElement, useCallback, useContext, useEffect, useLayoutEffect, useMemo, useRef, useState,
  useSyncExternalStore, type ReactNode,
} from 'react';
import {
  createClient, type ClientOptions, type ConnectionState, type DocView, type DocumentView, type EventMeta, type EventName,
  type PayloadOf, type PresenceUser, type PublishOptions, type PublishResult, type RoomState, type SwitchyardClient,
  type SwitchyardEvents,
} from '@switchyard/client';

type AnyClient = SwitchyardClient<any>;
const Ctx = createContext<AnyClient | null>(null);

const useIsoLayoutEffect = typeof window === 'undefined' ? useEffect : useLayoutEffect;

/** A ref that always holds the latest value (updated before effects run). */
function useLatest<T>(value: T) {
  const ref = useRef(value);
  useIsoLayoutEffect(() => {
    ref.current = value;
  });
  return ref;
}

export type SwitchyardProviderProps = Partial<ClientOptions> & {
  /** Use this client instead of creating one from the options. */
  client?: AnyClient;
  children?: ReactNode;
};

/**
 * Creates one client for its subtree (from the options on first render; later
 * option changes are not applied, except `token`, which is always the latest)
 * and keeps it connected while mounted.
 */
export function SwitchyardProvider({ client: given, children, ...options }: SwitchyardProviderProps) {
  const token = useLatest(options.token);
  const [client] = useState<AnyClient>(() => {
    if (given) return given;
    if (!options.url || !options.token) throw new Error('SwitchyardProvider needs `client`, or `url` and `token`');
    const src = options.token;
    return createClient({
      ...(options as ClientOptions),
      token: typeof src === 'function' ? () => (token.current as () => Promise<string>)() : src,
    });
  });
  useEffect(() => client.retain(), [client]);
  return createElement(Ctx.Provider, { value: client }, children);
}

/** The provider's client. */
export function useSwitchyard<E extends object = SwitchyardEvents>(): SwitchyardClient<E> {
  const c = useContext(Ctx);
  if (!c) throw new Error('Switchyard hooks must be used inside <SwitchyardProvider>');
  return c;
}

/** `connecting | connected | reconnecting | disconnected | unauthorized`, `replaying`, `replayed`, `lastError`, `pending`. */
export function useConnectionState(): ConnectionState {
  const c = useSwitchyard();
  return useSyncExternalStore(c.onState, c.getState, c.getState);
}

/** Calls `handler(payload, meta)` for each `type` event (only those of `room` when given, which is then subscribed). */
export function useEvent<E extends object = SwitchyardEvents, K extends EventName<E> = EventName<E>>(
  type: K,
  handler: (payload: PayloadOf<E, K>, meta: EventMeta) => void,
  options: { room?: string } = {},
): void {
  const c = useSwitchyard<E>();
  const latest = useLatest(handler);
  const room = options.room;
  useEffect(() => {
    const off = c.on(type, ((p: PayloadOf<E, K>, m: EventMeta) => {
      if (!room || m?.room === room) latest.current(p, m);
    }) as never);
    const release = room ? c.subscribe(room) : undefined;
    return () => {
      off();
      release?.();
    };
  }, [c, type, room, latest]);
}

/** Subscribes to `room` while mounted (reference-counted); returns `{ status, error }`. */
export function useRoom(room: string): RoomState {
  const c = useSwitchyard();
  const view = useMemo(() => c.room(room), [c, room]);
  return useSyncExternalStore(view.subscribe, view.getSnapshot, view.getSnapshot);
}

/** A stable `publish(type, payload, { room, priority })`; durable types go through the outbox. */
export function usePublish<E extends object = SwitchyardEvents>() {
  const c = useSwitchyard<E>();
  return useCallback(
    <K extends EventName<E>>(type: K, payload: PayloadOf<E, K>, opts?: PublishOptions): Promise<PublishResult> =>
      c.publish(type, payload, opts),
    [c],
  );
}

export type UseDocument<T> = DocView<T> & Pick<DocumentView<T>, 'update' | 'clearConflicts'>;

/** A shared document: `{ data, version, pending, conflicts, status, error, update, clearConflicts }`. */
export function useDocument<T = Record<string, unknown>>(type: string, id: string): UseDocument<T> {
  const c = useSwitchyard();
  const view = useMemo(() => c.document<T>(type, id), [c, type, id]);
  const snap = useSyncExternalStore(view.subscribe, view.getSnapshot, view.getSnapshot);
  return useMemo(() => ({ ...snap, update: view.update, clearConflicts: view.clearConflicts }), [snap, view]);
}

/** Users in `room` (`company` by default), kept current by the server's presence signals. */
export function usePresence(room = 'company'): PresenceUser[] {
  const c = useSwitchyard();
  const view = useMemo(() => c.presence(room), [c, room]);
  return useSyncExternalStore(view.subscribe, view.getSnapshot, view.getSnapshot);
}

/**
 * Who else is typing in `room`, and `setTyping(bool)` for this user (throttled
 * by the client). Sends `false` when the window loses focus and on unmount.
 */
export function useTyping(room: string): { typing: string[]; setTyping: (isTyping: boolean) => void } {
  const c = useSwitchyard();
  const view = useMemo(() => c.typing(room), [c, room]);
  const typing = useSyncExternalStore(view.subscribe, view.getSnapshot, view.getSnapshot);
  useEffect(() => {
    const stop = () => view.set(false);
    window.addEventListener('blur', stop);
    return () => {
      window.removeEventListener('blur', stop);
      stop();
    };
  }, [view]);
  return { typing, setTyping: view.set };
}

/** Hooks bound to your generated event map: `const { useEvent, usePublish } = typedHooks<MyEvents>()`. */
export function typedHooks<E extends object>() {
  return {
    useEvent: useEvent as <K extends EventName<E>>(type: K, handler: (payload: PayloadOf<E, K>, meta: EventMeta) => void, options?: { room?: string }) => void,
    usePublish: usePublish as () => <K extends EventName<E>>(type: K, payload: PayloadOf<E, K>, opts?: PublishOptions) => Promise<PublishResult>,
    useSwitchyard: useSwitchyard as () => SwitchyardClient<E>,
  };
}
