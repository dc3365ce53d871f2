-- Last-write-wins documents (SPEC §6). 0002 is reserved for replay cursors.
--
-- One row per document. `version` 0 marks a placeholder inserted by the first
-- writer of a new document so that concurrent creators serialise on its row
-- lock like every other writer; it is only ever committed together with a
-- real version, and readers treat version 0 as absent.
-- `fields` holds, per top-level field (deleted ones included, as tombstones),
-- the version, edit time and author of its last change:
-- { "status": { "version": 3, "editedAt": 1767225600000, "author": "u1" } }.
CREATE TABLE documents (
    company_id  TEXT NOT NULL,
    doc_type    TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    data        JSONB NOT NULL,
    fields      JSONB NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (company_id, doc_type, doc_id)
);

-- Every version's effective changes. The primary key is the guarantee that a
-- version number is used exactly once.
CREATE TABLE document_versions (
    company_id  TEXT NOT NULL,
    doc_type    TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    changes     JSONB NOT NULL,
    updated_by  TEXT NOT NULL,
    edited_at   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (company_id, doc_type, doc_id, version)
);

-- clientMutationId (scoped per user) / HTTP mutation ids and the first result,
-- so a retry gets the first answer and writes nothing. Checked under the
-- document's row lock, so a concurrent retry waits for the first attempt.
CREATE TABLE document_mutations (
    company_id  TEXT NOT NULL,
    doc_type    TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    result      JSONB NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (company_id, doc_type, doc_id, key)
);
CREATE INDEX document_mutations_created ON document_mutations (created_at);
