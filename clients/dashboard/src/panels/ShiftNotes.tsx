import { useEffect, useState } from 'react';
import { useDocument, useTyping } from '../hooks';

type Shift = { notes?: string; target?: number };

/**
 * A shared document (`shift/today`) edited by several users. Saving queues
 * the change in the outbox (applied locally at once); the server merges
 * concurrent edits last-write-wins per field and tells the loser.
 */
export function ShiftNotes() {
  const doc = useDocument<Shift>('shift', 'today');
  const { typing, setTyping } = useTyping('document:shift:today');
  const [draft, setDraft] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  // When not editing, the field shows the document.
  const value = draft ?? doc.data.notes ?? '';
  useEffect(() => {
    if (draft !== null && draft === doc.data.notes) setDraft(null);
  }, [draft, doc.data.notes]);

  const save = () => {
    if (draft === null) return;
    setTyping(false);
    setError(null);
    doc.update({ notes: draft }).catch((e: Error) => setError(e.message));
    setDraft(null);
  };

  return (
    <div className="doc" data-testid="shift-doc" data-version={doc.version} data-status={doc.status}>
      <textarea
        data-testid="shift-notes"
        value={value}
        rows={3}
        onChange={(e) => {
          setDraft(e.target.value);
          setTyping(true);
        }}
        onBlur={() => setTyping(false)}
      />
      <div className="row">
        <button type="button" data-testid="shift-save" onClick={save} disabled={draft === null}>
          Save
        </button>
        <span className="muted" data-testid="shift-meta">
          v{doc.version}
          {doc.pending > 0 && ` · ${doc.pending} pending`}
        </span>
        <span className="typing" data-testid="typing">
          {typing.length > 0 && `${typing.join(', ')} ${typing.length === 1 ? 'is' : 'are'} typing…`}
        </span>
      </div>
      {doc.conflicts.map((c, i) => (
        <div key={i} className="conflict" data-testid="conflict">
          Conflict on <b>{c.conflictedFields.join(', ')}</b>: you wrote “{String(c.incomingValue[c.conflictedFields[0]] ?? '')}”, the document
          kept “{String(c.resolvedValue[c.conflictedFields[0]] ?? '')}” (last write wins).
          <button type="button" onClick={doc.clearConflicts}>
            OK
          </button>
        </div>
      ))}
      {(error || doc.error) && <p className="error">{error ?? doc.error}</p>}
    </div>
  );
}
