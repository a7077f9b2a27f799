import { EditorView } from "@codemirror/view";

/** Lint marks without a gutter: a red wavy underline under the range the API reported. */
export const lintGutterless = [
  EditorView.baseTheme({
    ".cm-lintRange-error": { backgroundImage: "none", textDecoration: "underline wavy #b91c1c", textUnderlineOffset: "3px" },
  }),
];
