/**
 * The search box: a one-line CodeMirror editor for the search language, with colours, field-name
 * completion, Enter to search, and the API's syntax error marked where the API says it is.
 */
import { useEffect, useRef } from "react";
import { EditorState, Prec, RangeSetBuilder } from "@codemirror/state";
import { Decoration, EditorView, ViewPlugin, keymap, placeholder as cmPlaceholder, type DecorationSet, type ViewUpdate } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { autocompletion, completionStatus, type CompletionContext } from "@codemirror/autocomplete";
import { setDiagnostics } from "@codemirror/lint";
import { lintGutterless } from "./lint-theme";
import { fieldPrefixAt, tokenizeQuery } from "../lib/query-tokens";
import type { ErrorPosition } from "../api/client";
import { cn } from "../lib/cn";

const MARKS = {
  field: Decoration.mark({ class: "cm-tok-field" }),
  op: Decoration.mark({ class: "cm-tok-op" }),
  string: Decoration.mark({ class: "cm-tok-string" }),
  neg: Decoration.mark({ class: "cm-tok-neg" }),
  range: Decoration.mark({ class: "cm-tok-range" }),
};

function decorate(view: EditorView): DecorationSet {
  const builder = new RangeSetBuilder<Decoration>();
  for (const t of tokenizeQuery(view.state.doc.toString())) {
    if (t.type in MARKS) builder.add(t.from, t.to, MARKS[t.type as keyof typeof MARKS]);
  }
  return builder.finish();
}

const highlighter = ViewPlugin.fromClass(class {
  decorations: DecorationSet;
  constructor(view: EditorView) { this.decorations = decorate(view); }
  update(u: ViewUpdate) { if (u.docChanged) this.decorations = decorate(u.view); }
}, { decorations: (v) => v.decorations });

const oneLine = EditorState.transactionFilter.of((tr) => (tr.newDoc.lines > 1 ? [] : tr));

export type SearchBarProps = {
  value: string;
  onSubmit: (query: string) => void;
  /** Every edit, for forms that submit the search with other fields. */
  onChange?: (query: string) => void;
  /** Field names to offer while typing (columns and attribute keys seen in results). */
  fields?: readonly string[];
  error?: { message: string; position?: ErrorPosition } | null;
  placeholder?: string;
  label: string;
  className?: string;
  autoFocus?: boolean;
};

export function SearchBar({ value, onSubmit, onChange, fields = [], error, placeholder, label, className, autoFocus }: SearchBarProps) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const submit = useRef(onSubmit);
  submit.current = onSubmit;
  const change = useRef(onChange);
  change.current = onChange;
  const fieldList = useRef(fields);
  fieldList.current = fields;

  useEffect(() => {
    const complete = (ctx: CompletionContext) => {
      const at = fieldPrefixAt(ctx.state.doc.toString(), ctx.pos);
      if (!at || (!ctx.explicit && at.text.length === 0)) return null;
      const options = fieldList.current
        .filter((f) => f.toLowerCase().startsWith(at.text.toLowerCase()))
        .slice(0, 50)
        .map((f) => ({ label: `${f}:`, type: "property", apply: `${f}:` }));
      return options.length ? { from: at.from, options, validFor: /^[\w.\-@]*$/ } : null;
    };
    const v = new EditorView({
      parent: host.current!,
      state: EditorState.create({
        doc: value,
        extensions: [
          oneLine,
          history(),
          Prec.highest(keymap.of([{
            key: "Enter",
            run: (ev) => {
              if (completionStatus(ev.state) === "active") return false;
              submit.current(ev.state.doc.toString());
              return true;
            },
          }])),
          keymap.of([...defaultKeymap, ...historyKeymap]),
          autocompletion({ override: [complete], icons: false }),
          highlighter,
          lintGutterless,
          cmPlaceholder(placeholder ?? ""),
          EditorView.contentAttributes.of({ "aria-label": label, "data-testid": "search-input" }),
          EditorView.lineWrapping,
          EditorView.updateListener.of((u) => { if (u.docChanged) change.current?.(u.state.doc.toString()); }),
        ],
      }),
    });
    view.current = v;
    if (autoFocus) v.focus();
    return () => v.destroy();
    // The editor is created once; value changes from the URL are pushed in below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    const v = view.current;
    if (v && v.state.doc.toString() !== value) {
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value } });
    }
  }, [value]);

  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const len = v.state.doc.length;
    // The API's position may be the end of the query ("unexpected end"): mark the last character then.
    let from = Math.min(error?.position?.start ?? 0, len);
    const to = Math.min(error?.position?.end ?? len, len);
    if (from >= to) from = Math.max(0, to - 1);
    const diagnostics = error ? [{ from, to, severity: "error" as const, message: error.message }] : [];
    v.dispatch(setDiagnostics(v.state, diagnostics));
  }, [error]);

  // "/" anywhere on the page focuses the search (unless typing elsewhere).
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement;
      if (e.key === "/" && !e.ctrlKey && !e.metaKey && !/^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName) && !t.isContentEditable) {
        e.preventDefault();
        view.current?.focus();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  return (
    <div className={cn("min-w-0 flex-1", className)}>
      <div
        ref={host}
        className={cn("cm-search-line rounded-md border bg-panel focus-within:border-accent", error ? "border-err" : "border-border")}
        onClick={() => view.current?.focus()}
      />
      {error && (
        <p role="alert" data-testid="search-error" className="mt-1 text-xs text-err">
          {error.position ? <span className="font-mono">col {error.position.start + 1}: </span> : null}
          {error.message}
        </p>
      )}
    </div>
  );
}
