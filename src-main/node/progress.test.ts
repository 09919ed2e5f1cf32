import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { progressLine, shouldShowProgress } from './progress'

const ROOT = path.resolve(__dirname, '..', '..')
const COW = 'scenarios/cow-ordering.invalidate-range-needed.yaml'

describe('progressLine', () => {
  const base = { label: 'start-end', unit: 'states', total: null, started: 1_000, summary: null }

  it('a count without a total: states, states/s, elapsed', () => {
    expect(progressLine({ ...base, count: 150_000 }, 3_000)).toBe(
      'start-end  150,000 states  75,000 states/s  2.0 s',
    )
  })

  it('a note (the first violation found) follows the figures while the run goes on', () => {
    expect(progressLine({ ...base, count: 150_000, note: 'forbid found, exploring on' }, 3_000)).toBe(
      'start-end  150,000 states  75,000 states/s  2.0 s  forbid found, exploring on',
    )
  })

  it('a total draws a bar with the percentage', () => {
    const line = progressLine({ ...base, unit: 'schedules', total: 400, count: 100 }, 2_000)
    expect(line).toBe(`start-end  ${'█'.repeat(6)}${'░'.repeat(18)}  25%  100/400 schedules  100/s  1.0 s`)
  })

  it('a queued job says so; a finished one shows its summary; labels align', () => {
    expect(progressLine({ ...base, started: null, count: 0 }, 5_000, 16)).toBe('start-end         queued')
    expect(progressLine({ ...base, count: 9, summary: 'holds, 19 states, 0.1 s' }, 5_000)).toBe(
      'start-end  holds, 19 states, 0.1 s',
    )
  })

  it('is off for JSON and for a stream that is not a terminal', () => {
    const tty = { isTTY: true } as NodeJS.WriteStream
    const pipe = { isTTY: false } as NodeJS.WriteStream
    expect(shouldShowProgress(true, tty)).toBe(false)
    expect(shouldShowProgress(false, pipe)).toBe(false)
  })
})

// `script` (util-linux, in every Debian) runs the command under a pseudo-terminal.
const SCRIPT = '/usr/bin/script'

describe('mnlab run on a terminal and off it', () => {
  it('off a terminal (a pipe, as in CI), a run of several seconds writes nothing to stderr', () => {
    const r = spawnSync(process.execPath, ['bin/mnlab.cjs', 'run', COW, '--max-states', '150000'], {
      cwd: ROOT,
      encoding: 'utf8',
    })
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/^\s+start-end\s+violated/m)
    expect(r.stderr).toBe('')
  })

  it.skipIf(!existsSync(SCRIPT))(
    'on a terminal, live per-policy progress (states, states/s, elapsed) goes to stderr before the table',
    () => {
      const env = { ...process.env }
      delete env.CI
      const r = spawnSync(
        SCRIPT,
        [
          '-qec',
          `node bin/mnlab.cjs run ${COW} --max-states 250000 --policy start-end,arch-hook`,
          '/dev/null',
        ],
        { cwd: ROOT, encoding: 'utf8', env },
      )
      expect(r.status).toBe(0)
      const screen = r.stdout
      const table = screen.indexOf('policy ')
      const live = screen.search(/start-end\s+[\d,]+ states\s+[\d,]+ states\/s\s+\d+\.\d s/)
      expect(live).toBeGreaterThanOrEqual(0)
      expect(live).toBeLessThan(table)
      expect(screen).toMatch(/arch-hook\s+(holds|unknown), [\d,]+ states, \d+\.\d s/)
      expect(screen).toMatch(/^\s+arch-hook\s+(holds\s+holds\s+ok|unknown\s+holds\s+not proven)\s/m)
    },
  )
  if (!existsSync(SCRIPT))
    console.log(`progress.test.ts: no ${SCRIPT} (util-linux): the terminal test is skipped`)
})
