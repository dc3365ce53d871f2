-- See migrations/postgres/0003_documents.sql for the meaning of each table.
-- No WITHOUT ROWID here: rows hold whole documents (up to DOCUMENT_MAX_BYTES),
-- and SQLite stores large rows better in rowid tables.
CREATE TABLE documents (
    company_id  TEXT NOT NULL,
    doc_type    TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    data        TEXT NOT NULL,
    fields      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (company_id, doc_type, doc_id)
);

CREATE TABLE document_versions (
    company_id  TEXT NOT NULL,
    doc_type    TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    changes     TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    edited_at   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (company_id, doc_type, doc_id, version)
);

CREATE TABLE document_mutations (
    company_id  TEXT NOT NULL,
    doc_type    TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    result      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (company_id, doc_type, doc_id, key)
);
CREATE INDEX document_mutations_created ON document_mutations (created_at);
