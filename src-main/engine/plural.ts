/**
 * Counted nouns in messages: `1 entry dropped`, `2 entries dropped`. Every message that prints
 * a count with its noun goes through these, so none says "1 entries".
 */

/** The noun for `n` things: `one` for exactly 1, else `many` (default: `one` + s). */
export function plural(n: number, one: string, many = `${one}s`): string {
  return n === 1 ? one : many
}

/** `1 entry`, `2 entries`, `1,234 state pairs` (the count with thousands separators). */
export function count(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString('en-US')} ${plural(n, one, many)}`
}
