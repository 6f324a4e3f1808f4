// How XNAT names become path components, reversibly.
//
// XNAT ids and labels are restricted to [A-Za-z0-9_-], so in practice only file names and
// resource labels can hold characters a path component can't: "/" (never inside a listed
// file name, since it separates folders, but possible in principle in a label) and the names
// "." and "..". Everything else — spaces, "#", "%", "+", non-ASCII — is shown as is.
//   "/"                              → "%2F"
//   "%" before "2F" or "25" (any case) → "%25", so those stay distinguishable
//   a whole name ".", ".." or ""     → "%2E", "%2E%2E", "%00" (and a real name spelled like
//                                       one of these has its first "%" escaped)
// Nothing else is an escape: "report%20final.txt" means itself both ways, so a file copied in
// under such a name is listed under the same name. `unescapeName(escapeName(x)) === x`.

const PERCENT_BEFORE_ESCAPE = /%(?=2F|25)/gi;
const WHOLE_NAME_ESCAPES = new Set(['%2E', '%2E%2E', '%00']);

export function escapeName(name: string): string {
  if (name === '.') return '%2E';
  if (name === '..') return '%2E%2E';
  if (name === '') return '%00';
  if (!name.includes('%') && !name.includes('/')) return name;
  const escaped = name.replace(PERCENT_BEFORE_ESCAPE, '%25').replace(/\//g, '%2F');
  return WHOLE_NAME_ESCAPES.has(escaped) ? `%25${escaped.slice(1)}` : escaped;
}

export function unescapeName(component: string): string {
  if (component === '%2E') return '.';
  if (component === '%2E%2E') return '..';
  if (component === '%00') return '';
  if (!component.includes('%')) return component;
  return component.replace(/%(2F|25)/gi, (m) => (m.toUpperCase() === '%2F' ? '/' : '%'));
}

/**
 * A scan's folder name, as XNAT's own zip downloads name it: "<ID>-<type>" with every
 * non-word character of the type replaced by "_" (Java's \W is ASCII-only, like JavaScript's).
 * A scan without a type is just its ID.
 */
export function scanFolderName(id: string, type: string): string {
  const safeType = type.replace(/\W/g, '_');
  return escapeName(safeType === '' ? id : `${id}-${safeType}`);
}
