// The dashboard's hooks, typed with its own generated catalog (built-in + catalog.json).
import { typedHooks } from '@switchyard/react';
import type { ServerEvents } from '@switchyard/client';
import type { CatalogEvents } from './catalog.gen';

export type Events = CatalogEvents & ServerEvents;
export const { useEvent, usePublish } = typedHooks<Events>();
export {
  useConnectionState, useDocument, usePresence, useRoom, useSwitchyard, useTyping,
} from '@switchyard/react';
