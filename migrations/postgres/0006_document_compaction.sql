-- Compaction of deleted fields' metadata (tombstones), see src/documents/bounds.rs:
-- the highest version of a tombstone dropped so far (0 = none). An update whose
-- baseVersion is below it and that writes a field without metadata is refused
-- with CONFLICT, because the dropped tombstone might have decided that field.
ALTER TABLE documents ADD COLUMN compacted_version BIGINT NOT NULL DEFAULT 0;
