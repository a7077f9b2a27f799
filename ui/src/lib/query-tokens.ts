/**
 * A highlighter's view of the search language (`level:error service:api "connection refused" -foo`,
 * `duration:>1000`, `AND`/`OR`/`NOT`, parentheses, ranges). Only for colours and completion context:
 * the API's parser is the one that decides what a query means, and reports its errors.
 */

export type TokenType = "field" | "op" | "string" | "neg" | "range" | "paren" | "word";
export type Token = { from: number; to: number; type: TokenType };

export function tokenizeQuery(q: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < q.length) {
    const c = q[i];
    if (/\s/.test(c)) { i++; continue; }
    if (c === "(" || c === ")") { out.push({ from: i, to: i + 1, type: "paren" }); i++; continue; }
    if ((c === "-" || c === "!") && i + 1 < q.length && !/\s/.test(q[i + 1]) && (i === 0 || /[\s(]/.test(q[i - 1]))) {
      out.push({ from: i, to: i + 1, type: "neg" }); i++; continue;
    }
    if (c === '"') {
      let j = i + 1;
      while (j < q.length && q[j] !== '"') j += q[j] === "\\" ? 2 : 1;
      out.push({ from: i, to: Math.min(j + 1, q.length), type: "string" }); i = Math.min(j + 1, q.length); continue;
    }
    if (c === "[" || c === "{") {
      let j = i + 1;
      while (j < q.length && q[j] !== "]" && q[j] !== "}") j++;
      out.push({ from: i, to: Math.min(j + 1, q.length), type: "range" }); i = Math.min(j + 1, q.length); continue;
    }
    let j = i;
    while (j < q.length && !/[\s()"]/.test(q[j]) && !(q[j] === ":" && j > i)) j++;
    if (q[j] === ":" && j > i) {
      out.push({ from: i, to: j + 1, type: "field" });
      i = j + 1;
      const k = i;
      if (q[k] === ">" || q[k] === "<") {
        let m = k + 1;
        if (q[m] === "=") m++;
        while (m < q.length && !/[\s()]/.test(q[m])) m++;
        out.push({ from: k, to: m, type: "range" }); i = m;
      }
      continue;
    }
    const word = q.slice(i, j);
    out.push({ from: i, to: j, type: /^(AND|OR|NOT|TO)$/.test(word) || word === "&&" || word === "||" ? "op" : "word" });
    i = j;
  }
  return out;
}

/** The field-name prefix being typed at `pos`, if the cursor is at the start of a term (not in a phrase or a value). */
export function fieldPrefixAt(q: string, pos: number): { from: number; text: string } | null {
  const before = q.slice(0, pos);
  const tokens = tokenizeQuery(before);
  const last = tokens[tokens.length - 1];
  if (!last || last.to < pos) {
    // after whitespace, "(", or nothing: a new term starts here
    return { from: pos, text: "" };
  }
  if (last.type === "neg" || last.type === "paren") return { from: pos, text: "" };
  if (last.type !== "word") return null;
  const prev = tokens[tokens.length - 2];
  if (prev && prev.type === "field" && prev.to === last.from) return null;
  return { from: last.from, text: before.slice(last.from) };
}
