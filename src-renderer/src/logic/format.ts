/** Small formatting helpers for a dense UI. */

/** `1 state`, `2 states`: a count with its noun, never "1 states". */
export function counted(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`
}

export function formatCount(n: number): string {
  if (n < 10_000) return String(Math.round(n))
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 100_000 ? 1 : 0)}k`
  return `${(n / 1_000_000).toFixed(n < 10_000_000 ? 2 : 1)}M`
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  const s = Math.round(ms / 1000)
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
}

export function formatNs(ns: number): string {
  if (ns < 1000) return `${ns} ns`
  if (ns < 1_000_000) return `${(ns / 1000).toFixed(1)} µs`
  return `${(ns / 1_000_000).toFixed(2)} ms`
}

/** A scenario path for a new file: relative to scenarios/, forward slashes, ending in .yaml. */
export function normaliseScenarioPath(input: string): string | { error: string } {
  let p = input.trim().replace(/\\/g, '/').replace(/^\.\//, '')
  if (p.startsWith('scenarios/')) p = p.slice('scenarios/'.length)
  if (p === '') return { error: 'Give a file name, e.g. my-race.variant.yaml' }
  if (p.startsWith('/') || p.split('/').some((s) => s === '..' || s === '')) {
    return { error: 'The path must stay inside scenarios/' }
  }
  if (!/\.ya?ml$/.test(p)) p += '.yaml'
  return p
}
