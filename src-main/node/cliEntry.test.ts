/**
 * The mnlab command as users run it: separate processes through every way the launcher can be
 * reached, asserting on output and exit codes. This guards the bug where a guard on
 * process.argv[1] made `npx mnlab ...` print nothing and exit 0: under every name below the CLI
 * must do its real work, and each check would fail on an empty output.
 *   - npm's bin link: node_modules/.bin/mnlab of a project that depends on this one;
 *   - `npx mnlab` in this project (npm exec's own link in its cache);
 *   - a symlink with another name;
 *   - `npm link` (into a temporary global prefix).
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const ROOT = path.resolve(__dirname, '..', '..')
const UPGRADE = path.join(ROOT, 'scenarios', 'upgrade-loop.smmu-no-btm.yaml')
const UPGRADE_TEXT = readFileSync(UPGRADE, 'utf8')

interface Out {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

function run(cmd: string, args: readonly string[], cwd = ROOT): Out {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    timeout: 60_000,
    // No TTY here, and the CI variable as in CI: no progress output may leak into these streams.
    env: { ...process.env, npm_config_yes: 'true', npm_config_update_notifier: 'false' },
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

let dir = ''
let badFile = ''
let mismatchFile = ''
/** Name -> how to invoke the CLI that way: [command, leading args]. */
const ways = new Map<string, readonly [string, readonly string[]]>()

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'mnlab-entry-'))
  badFile = path.join(dir, 'bad.yaml')
  // line 9 is "  C0: [write_fault P]": an unknown page there
  writeFileSync(badFile, UPGRADE_TEXT.replace('[write_fault P]', '[write_fault Z]'))
  mismatchFile = path.join(dir, 'mismatch.yaml')
  // arch-hook holds on this race: expecting a violation must fail `check`
  writeFileSync(mismatchFile, UPGRADE_TEXT.replace('arch-hook: holds', 'arch-hook: violated'))

  // 1. A project that depends on this one: npm creates node_modules/.bin/mnlab.
  const consumer = path.join(dir, 'consumer')
  mkdirSync(consumer)
  writeFileSync(
    path.join(consumer, 'package.json'),
    JSON.stringify({
      name: 'consumer',
      version: '1.0.0',
      private: true,
      dependencies: { 'mmu-notifier-lab': `file:${ROOT}` },
    }),
  )
  const inst = run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], consumer)
  expect(inst.code, inst.stderr).toBe(0)
  ways.set('node_modules/.bin/mnlab', [path.join(consumer, 'node_modules', '.bin', 'mnlab'), []])

  // 2. npx in this project.
  ways.set('npx mnlab', ['npx', ['mnlab']])

  // 3. A symlink with another name.
  const other = path.join(dir, 'notifier-lab-cli')
  symlinkSync(path.join(ROOT, 'bin', 'mnlab.cjs'), other)
  ways.set('symlink notifier-lab-cli', [other, []])

  // 4. npm link into a throwaway global prefix.
  const prefix = path.join(dir, 'global')
  const link = spawnSync('npm', ['link', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, npm_config_prefix: prefix },
  })
  expect(link.status, link.stderr).toBe(0)
  ways.set('npm link', [path.join(prefix, 'bin', 'mnlab'), []])
}, 120_000)

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/** The ways, in the order beforeAll sets them up (describe.each needs the names before it runs). */
const WAYS = ['node_modules/.bin/mnlab', 'npx mnlab', 'symlink notifier-lab-cli', 'npm link']

describe.each(WAYS)('mnlab through %s', (way) => {
  const mnlab = (...args: string[]): Out => {
    const [cmd, lead] = ways.get(way)!
    return run(cmd, [...lead, ...args])
  }

  it('--version and --help print and exit 0', () => {
    const v = mnlab('--version')
    expect(v.code).toBe(0)
    expect(v.stdout).toMatch(/^mnlab \d+\.\d+\.\d+ \(engine \d+\.\d+\.\d+, node \d+/)
    const h = mnlab('--help')
    expect(h.code).toBe(0)
    expect(h.stdout).toContain('mnlab run FILE...')
  })

  it('run prints the verdict table: the arch hook holds on the SMMU upgrade loop, start-end livelocks', () => {
    const r = mnlab('run', UPGRADE)
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(/^\s+policy\s+verdict\s+expect/m)
    expect(r.stdout).toMatch(/^\s+start-end\s+violated\s+violated\s+ok\s+progress\s/m)
    expect(r.stdout).toMatch(/^\s+arch-hook\s+holds\s+holds\s+ok\s/m)
    expect(r.stdout).toContain('schedule: C0 C0 D0  then forever: D0 D0 D0')
  })

  it('an invalid file exits 2 with file:line:column; a missing one too', () => {
    const bad = mnlab('run', badFile)
    expect(bad.code).toBe(2)
    expect(bad.stdout).toBe('')
    expect(bad.stderr).toBe(`${badFile}:9:20: unknown page 'Z' (did you mean 'P'?); pages are P\n`)
    const missing = mnlab('check', path.join(dir, 'no-such.yaml'))
    expect(missing.code).toBe(2)
    expect(missing.stderr).toBe(`${path.join(dir, 'no-such.yaml')}:1:1: no such file or directory\n`)
  })

  it('check exits 1 on a failing expectation and 0 when every expectation holds', () => {
    const bad = mnlab('check', mismatchFile)
    expect(bad.code).toBe(1)
    expect(bad.stdout).toMatch(/^FAIL \S+mismatch\.yaml arch-hook: expect violated, holds/m)
    expect(bad.stdout).toMatch(/^2 passed, 1 failed$/m)
    const good = mnlab('check', UPGRADE)
    expect(good.code).toBe(0)
    expect(good.stdout).toMatch(/^3 passed, 0 failed$/m)
  })

  it('an unknown command exits 2 and says so', () => {
    const r = mnlab('frobnicate')
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^mnlab: unknown command 'frobnicate'/)
  })
})

describe('the launcher', () => {
  it('has no guard on the invoked name: src-main/node/cli.ts never decides from argv[1] whether to run', () => {
    const src = readFileSync(path.join(ROOT, 'src-main', 'node', 'cli.ts'), 'utf8')
    expect(src).not.toMatch(/process\.argv\[1\]/)
    expect(src).not.toMatch(/require\.main/)
    expect(readFileSync(path.join(ROOT, 'bin', 'mnlab.cjs'), 'utf8')).toMatch(
      /\.runCli\(process\.argv\.slice\(2\)\)/,
    )
  })
})
