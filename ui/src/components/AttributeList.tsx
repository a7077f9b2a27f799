/** Key/value attributes; clicking a value adds `key:value` to the search (or excludes it). */
import { Button } from "./ui/button";
import { Icon } from "./ui/icons";

export function AttributeList({ title, attributes, onFilter, fieldPrefix = "", testid }: {
  title: string;
  attributes: Record<string, string>;
  onFilter?: (field: string, value: string, negate: boolean) => void;
  fieldPrefix?: string;
  testid?: string;
}) {
  const entries = Object.entries(attributes).sort(([a], [b]) => a.localeCompare(b));
  return (
    <section className="flex flex-col gap-1" data-testid={testid}>
      {title && <h3 className="text-xs font-semibold tracking-wide text-muted uppercase">{title} <span className="font-normal">({entries.length})</span></h3>}
      {entries.length === 0 ? (
        <p className="text-xs text-muted">None</p>
      ) : (
        <dl className="grid grid-cols-[minmax(6rem,auto)_1fr] gap-x-3 gap-y-0.5 text-xs">
          {entries.map(([k, v]) => (
            <div key={k} className="group contents">
              <dt className="truncate py-0.5 font-mono text-muted" title={k}>{k}</dt>
              <dd className="flex min-w-0 items-start gap-1 py-0.5">
                <span className="min-w-0 flex-1 font-mono break-all">{v}</span>
                {onFilter && (
                  <span className="flex shrink-0 gap-0.5 opacity-60 group-hover:opacity-100 focus-within:opacity-100">
                    <Button size="sm" variant="ghost" className="h-5 px-1" title={`Filter: ${fieldPrefix}${k}:${v}`} aria-label={`Filter by ${k}`}
                      data-testid="filter-in" onClick={() => onFilter(fieldPrefix + k, v, false)}><Icon name="plus" className="size-3.5" /></Button>
                    <Button size="sm" variant="ghost" className="h-5 px-1" title={`Exclude: -${fieldPrefix}${k}:${v}`} aria-label={`Exclude ${k}`}
                      onClick={() => onFilter(fieldPrefix + k, v, true)}><Icon name="minus" className="size-3.5" /></Button>
                  </span>
                )}
              </dd>
            </div>
          ))}
        </dl>
      )}
    </section>
  );
}
