/**
 * Live progress on stderr for long commands (`mnlab run`, `check`, `bench`, the crash test):
 * one line per task (a policy's exploration, a bench step), drawn by cli-progress, a maintained
 * terminal progress library (cursor movement, redraw throttling and terminal width are its job,
 * not ours). Enabled only when stderr is a terminal and the output is not JSON: CI logs and
 * pipes get nothing extra. Lines appear only once a command has run for `delayMs` (1 s), so
 * quick runs never flicker.
 */
import { MultiBar, type SingleBar } from 'cli-progress'

export interface ProgressTask {
  /** `count` states (or schedules, or rounds) so far. */
  update(count: number): void
  /** Replaces the line with a final summary. */
  done(summary: string): void
  /** A short note shown after the figures while it runs (the first violation found). */
  note(text: string): void
}

export interface ProgressBoard {
  /** A new line: `total` draws a bar (random schedules, crash-test rounds); null shows a count. */
  task(label: string, unit: string, total: number | null): ProgressTask
  /** Draws the final state and gives the terminal back. */
  stop(): void
}

interface Payload {
  readonly label: string
  readonly unit: string
  readonly count: number
  readonly total: number | null
  /** When the first count arrived (a queued job has none yet). */
  readonly started: number | null
  readonly summary: string | null
  readonly note?: string | null
}

const BAR_WIDTH = 24

function seconds(ms: number): string {
  return ms < 60_000
    ? `${(ms / 1000).toFixed(1)} s`
    : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`
}

/** One line of the board, from a task's payload (exported for tests). */
export function progressLine(p: Payload, now: number, labelWidth = p.label.length): string {
  const label = p.label.padEnd(labelWidth)
  if (p.summary !== null) return `${label}  ${p.summary}`
  if (p.started === null) return `${label}  queued`
  const elapsed = now - p.started
  const rate = elapsed > 0 ? Math.round((p.count / elapsed) * 1000) : 0
  const note = p.note ? `  ${p.note}` : ''
  const figures = `${p.count.toLocaleString('en-US')} ${p.unit}  ${rate.toLocaleString('en-US')} ${p.unit}/s  ${seconds(elapsed)}${note}`
  if (p.total === null || p.total <= 0) return `${label}  ${figures}`
  const frac = Math.min(1, p.count / p.total)
  const full = Math.round(frac * BAR_WIDTH)
  const bar = '█'.repeat(full) + '░'.repeat(BAR_WIDTH - full)
  return `${label}  ${bar} ${Math.floor(frac * 100)
    .toString()
    .padStart(
      3,
    )}%  ${p.count.toLocaleString('en-US')}/${p.total.toLocaleString('en-US')} ${p.unit}  ${rate.toLocaleString('en-US')}/s  ${seconds(elapsed)}${note}`
}

const NOOP_TASK: ProgressTask = { update() {}, done() {}, note() {} }
const NOOP_BOARD: ProgressBoard = { task: () => NOOP_TASK, stop() {} }

export interface BoardOptions {
  /** Draw only when this is true; see `shouldShowProgress`. */
  readonly enabled: boolean
  readonly delayMs?: number
  readonly stream?: NodeJS.WriteStream
}

/** Progress is for people at a terminal: never into a pipe, a file, a CI log or JSON output. */
export function shouldShowProgress(json: boolean, stream: NodeJS.WriteStream = process.stderr): boolean {
  return !json && stream.isTTY === true && process.env.CI === undefined
}

export function progressBoard(opts: BoardOptions): ProgressBoard {
  if (!opts.enabled) return NOOP_BOARD
  const stream = opts.stream ?? process.stderr
  const delayMs = opts.delayMs ?? 1000
  const created = Date.now()
  const tasks: Array<{ payload: Payload; bar: SingleBar | null }> = []
  let multi: MultiBar | null = null
  let stopped = false
  const labelWidth = (): number => Math.max(0, ...tasks.map((t) => t.payload.label.length))
  const show = (): void => {
    if (multi || stopped) return
    multi = new MultiBar({
      stream,
      fps: 8,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      linewrap: false,
      format: (_o, _params, payload: Payload) => progressLine(payload, Date.now(), labelWidth()),
    })
    for (const t of tasks) t.bar = multi.create(1, 0, t.payload)
  }
  const timer = setTimeout(show, Math.max(0, delayMs - (Date.now() - created)))
  timer.unref()
  return {
    task(label, unit, total) {
      const entry: { payload: Payload; bar: SingleBar | null } = {
        payload: { label, unit, count: 0, total, started: null, summary: null },
        bar: null,
      }
      tasks.push(entry)
      if (multi) entry.bar = multi.create(1, 0, entry.payload)
      const set = (p: Partial<Payload>): void => {
        entry.payload = { ...entry.payload, ...p }
        entry.bar?.update(0, entry.payload)
      }
      return {
        update: (count) => set({ count, started: entry.payload.started ?? Date.now() }),
        done: (summary) => set({ summary }),
        note: (text) => set({ note: text }),
      }
    },
    stop() {
      clearTimeout(timer)
      if (stopped) return
      stopped = true
      if (multi) {
        for (const t of tasks) t.bar?.update(0, t.payload)
        multi.stop()
      }
    },
  }
}
