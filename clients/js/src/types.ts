// Wire shapes of the Switchyard protocol (docs/protocol.md) and the SDK's public types.

import type { CatalogDocuments, CatalogEvents } from './catalog.gen';

export type Role = 'operator' | 'supervisor' | 'manager' | 'admin';
export type Priority = 'low' | 'medium' | 'high' | 'critical';

/** Error codes the server answers with (acks and connect errors), plus the SDK's own. */
export type ErrorCode =
  | 'UNAUTHORIZED' | 'INVALID_TOKEN' | 'TOKEN_EXPIRED' | 'LIMIT_EXCEEDED' | 'UNAVAILABLE'
  | 'FORBIDDEN' | 'VALIDATION_FAILED' | 'UNKNOWN_EVENT' | 'PAYLOAD_TOO_LARGE' | 'RATE_LIMITED'
  | 'CONFLICT' | 'INVALID_ROOM' | 'NOT_FOUND'
  /** SDK: no ack within the timeout. */
  | 'TIMEOUT'
  /** SDK: an ephemeral publish while not connected (ephemeral types are never queued). */
  | 'OFFLINE'
  /** SDK: the client was closed. */
  | 'CLOSED'
  | (string & {});

export interface SwitchyardErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

/** The second argument of every delivered domain event. */
export interface EventMeta {
  id: string;
  type: string;
  room: string;
  /** Durable events only: the event's position in `room`. */
  offset?: number;
  timestamp: string;
  source: string;
  priority: Priority;
  publisher?: string;
}

export interface Session {
  socketId: string;
  userId: string;
  companyId: string;
  role: Role;
  rooms: string[];
  serverTime: number;
  replayed: number;
}

export interface PresenceUser {
  userId: string;
  role?: Role;
  connections: number;
  since?: number | string;
}

export interface DocumentSnapshot<T = Record<string, unknown>> {
  type: string;
  id: string;
  version: number;
  data: T;
  updatedAt?: string | null;
  updatedBy?: string | null;
}

export interface DocumentConflict {
  type: string;
  id: string;
  strategy: 'last-write-wins';
  conflictedFields: string[];
  originalValue: Record<string, unknown>;
  incomingValue: Record<string, unknown>;
  resolvedValue: Record<string, unknown>;
  version: number;
  resolution?: Record<string, { winner: 'stored' | 'incoming'; [k: string]: unknown }>;
}

export interface DocumentUpdated {
  type: string;
  id: string;
  version: number;
  changes: Record<string, unknown>;
  updatedBy: string;
  updatedAt: string;
}

/** Events the server generates itself (not in the catalog). */
export interface ServerEvents {
  'user:online': { userId: string; role: Role; at: number };
  'user:offline': { userId: string; at: number; duration: number };
  'user:typing': { room: string; userId: string; isTyping: boolean };
  'presence:joined': { room: string; userId: string; role: Role; at: number };
  'presence:left': { room: string; userId: string; at: number };
  'document:updated': DocumentUpdated;
  'document:conflict': DocumentConflict;
  'replay:truncated': { room: string; oldestOffset: number };
  'session:expired': { reason: string; expiredAt: number | string };
  session: Session;
}

/** Every event the SDK can deliver: the catalog's plus the server's own. */
export type SwitchyardEvents = CatalogEvents & ServerEvents;
export type { CatalogDocuments, CatalogEvents };

export type ConnectionStatus = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'unauthorized';

export interface ConnectionState {
  status: ConnectionStatus;
  /** True between (re)connect and the end of the replay (`session`, then re-subscribe acks). */
  replaying: boolean;
  /** Durable events received since the current replay began. */
  replayed: number;
  /** The last error code seen (connect error, refused ack), or null. */
  lastError: ErrorCode | null;
  /** Outbox entries waiting to be delivered. */
  pending: number;
  session: Session | null;
}

export type Ack<T = Record<string, unknown>> = ({ ok: true } & T) | { ok: false; error: SwitchyardErrorBody };
