/** The SQL editor: CodeMirror with ClickHouse-flavoured SQL, table-name completion, Ctrl/Cmd+Enter to run. */
import { useEffect, useRef } from "react";
import { EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, placeholder } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { sql, StandardSQL } from "@codemirror/lang-sql";
import { autocompletion } from "@codemirror/autocomplete";
import { syntaxHighlighting, defaultHighlightStyle, bracketMatching } from "@codemirror/language";
import { setDiagnostics } from "@codemirror/lint";
import { lintGutterless } from "./lint-theme";

export function SqlEditor({ value, onChange, onRun, tables, error }: {
  value: string;
  onChange: (sql: string) => void;
  onRun: (sql: string) => void;
  tables: Record<string, string[]>;
  error?: string | null;
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const run = useRef(onRun);
  run.current = onRun;
  const change = useRef(onChange);
  change.current = onChange;

  useEffect(() => {
    const v = new EditorView({
      parent: host.current!,
      state: EditorState.create({
        doc: value,
        extensions: [
          lineNumbers(),
          history(),
          bracketMatching(),
          Prec.highest(keymap.of([{ key: "Mod-Enter", run: (ev) => { run.current(ev.state.doc.toString()); return true; } }])),
          keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
          sql({ dialect: StandardSQL, schema: tables, upperCaseKeywords: true }),
          syntaxHighlighting(defaultHighlightStyle),
          autocompletion(),
          lintGutterless,
          placeholder("SELECT ServiceName, count() FROM otel_logs WHERE Timestamp > now() - INTERVAL 1 HOUR GROUP BY ServiceName"),
          EditorView.contentAttributes.of({ "aria-label": "SQL query", "data-testid": "sql-input" }),
          EditorView.updateListener.of((u) => { if (u.docChanged) change.current(u.state.doc.toString()); }),
          EditorView.theme({ "&": { minHeight: "8rem", maxHeight: "40vh" }, ".cm-scroller": { overflow: "auto" } }),
        ],
      }),
    });
    view.current = v;
    return () => v.destroy();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [JSON.stringify(tables)]);

  useEffect(() => {
    const v = view.current;
    if (v && v.state.doc.toString() !== value) v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value } });
  }, [value]);

  useEffect(() => {
    const v = view.current;
    if (!v) return;
    v.dispatch(setDiagnostics(v.state, error ? [{ from: 0, to: v.state.doc.length, severity: "error", message: error }] : []));
  }, [error]);

  return <div ref={host} className="overflow-hidden rounded-md border border-border bg-panel focus-within:border-accent" />;
}
