/**
 * `npm run fuzz -- [--cases N] [--seed S]`: the scenario fuzzer (fuzz.ts) for longer runs than
 * `npm test` does (nightly). Prints the counts per outcome and every finding with the input that
 * caused it; exits 1 if there was any.
 */
import path from 'node:path'
import { catalogueTexts, fuzz, fuzzNotebooks, notebookTexts, type FuzzReport } from './fuzz'

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const v = Number(process.argv[i + 1])
  if (!Number.isInteger(v) || v < 0) {
    console.error(`fuzz: --${name} needs a non-negative integer`)
    process.exit(2)
  }
  return v
}

const cases = flag('cases', 1_000)
const seed = flag('seed', Date.now() % 1_000_000)
const root = path.resolve(__dirname, '..', '..')
function report(what: string, r: FuzzReport, t0: number): void {
  for (const f of r.findings) {
    console.log(
      `--- ${what} ${f.outcome.kind} (${f.outcome.ms} ms), mutations: ${f.input.mutations.join(', ')}`,
    )
    console.log(f.outcome.detail)
    console.log('--- input:')
    console.log(
      f.input.text.length > 4_000
        ? `${f.input.text.slice(0, 4_000)}\n... (${f.input.text.length} characters)`
        : f.input.text,
    )
  }
  const counts = Object.entries(r.counts)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')
  console.log(
    `${what}: ${r.cases} cases, seed ${seed}: ${counts}; slowest case ${r.slowestMs} ms; ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  )
}

let t0 = Date.now()
const scenarios = fuzz(catalogueTexts(root), cases, seed)
report('fuzz', scenarios, t0)
t0 = Date.now()
const notebooks = fuzzNotebooks(notebookTexts(root), cases, seed)
report('notebooks', notebooks, t0)
process.exit(scenarios.findings.length + notebooks.findings.length > 0 ? 1 : 0)
