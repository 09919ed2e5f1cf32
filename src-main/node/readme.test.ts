/**
 * Every command the README shows in a fenced `sh` block is run as written (in a scratch copy of
 * the project, so exports and recordings do not touch the tree) and must exit as documented and
 * print what the table below says it prints. A command this test does not know fails it: a new
 * example in the README needs an expectation here. A few commands cannot run here; each is
 * skipped with its reason in the test's name.
 */
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { INVARIANTS, SITE_NAMES } from '../engine'

const ROOT = path.resolve(__dirname, '..', '..')
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8')

/** The commands of the README's ```sh blocks, without their trailing `# comment`. */
export function readmeCommands(markdown: string): string[] {
  const out: string[] = []
  const fence = /^```sh\n([\s\S]*?)^```/gm
  for (const m of markdown.matchAll(fence)) {
    for (const raw of m[1]!.split('\n')) {
      const line = raw.replace(/\s+#\s.*$/, '').trim()
      if (line && !line.startsWith('#')) out.push(line)
    }
  }
  return out
}

interface Expectation {
  /** The exit code the README documents (0 unless it says otherwise). */
  readonly exit?: number
  /** What stdout must show: the command's real work, never just any output. */
  readonly stdout?: readonly RegExp[]
  /** What the command must have written, relative to the scratch folder. */
  readonly writes?: string
  /** Arguments appended to keep the test small (npm run scripts only). */
  readonly budget?: readonly string[]
  /** Why it is not run here (shown as the skipped test's name). */
  readonly skip?: string
  /** Run it with its own harness (a server that never exits). */
  readonly server?: true
}

const TABLE = /^\s+policy\s+verdict\s+expect\s/m

const EXPECTED: Record<string, Expectation> = {
  'npm ci && npm start': { server: true },
  'npm test': { skip: 'this test is part of npm test; .ci/run runs npm test itself' },
  'npm run fuzz -- --cases 300 --seed 1': {
    stdout: [
      /^fuzz: 300 cases, seed 1: ran \d+, refused \d+, crash 0, slow 0, unlocated 0, broken-line 0, oversize 0;/m,
    ],
  },
  'npx mnlab sites': {
    stdout: [
      /^ {2}invalidate_range_start {2}\[start-end\]$/m,
      /^ {2}wp_page_reuse {2}\[upgrade-notify\]$/m,
      /^ {2}arch-hook: flush_tlb_page, flush_tlb_range, flush_tlb_mm, arch_tlbbatch_add_pending$/m,
    ],
  },
  "npx mnlab run scenarios/upgrade-loop.smmu-no-btm.yaml --policy 'sites:ptep_set_access_flags,sites:wp_page_reuse'":
    {
      stdout: [
        TABLE,
        /^\s+sites:ptep_set_access_flags\s+holds\s/m,
        /^\s+sites:wp_page_reuse\s+violated\s+-\s+progress\s/m,
      ],
    },
  'npx mnlab run scenarios/upgrade-loop.sites.yaml --policy popple-v1,popple-v1-reuse': {
    stdout: [
      TABLE,
      /^\s+popple-v1\s+violated\s+progress\s+ok\s+progress\s/m,
      /^\s+popple-v1-reuse\s+holds\s+holds\s+ok\s/m,
    ],
  },
  'npx mnlab --version': { stdout: [/^mnlab \d+\.\d+\.\d+ \(engine \d+\.\d+\.\d+, node \d+/] },
  'npx mnlab run scenarios/upgrade-loop.smmu-no-btm.yaml': {
    stdout: [
      TABLE,
      /^\s+arch-hook\s+holds\s+holds\s+ok\s/m,
      /^\s+start-end\s+violated\s+violated\s+ok\s+progress/m,
    ],
  },
  'npx mnlab run scenarios/cow-ordering.invalidate-range-needed.yaml': {
    stdout: [
      TABLE,
      /^\s+start-end\s+violated\s+violated\s+ok\s+forbid\s/m,
      /^\s+invalidate-range\s+holds\s+holds\s+ok\s/m,
      /^\s+arch-hook\s+holds\s+holds\s+ok\s/m,
    ],
  },
  'npx mnlab run scenarios/cow-ordering.flush-at-end.yaml --policy all --json': {
    stdout: [
      /^\{\n {2}"file": "scenarios\/cow-ordering\.flush-at-end\.yaml",/,
      /"policy": "arch-hook",\n\s+"verdict": "holds"/,
    ],
  },
  'npx mnlab run scenarios/upgrade-loop.variants.yaml --policy arch-hook,start-end+pri-flush': {
    stdout: [TABLE, /^\s+arch-hook\s+holds\s/m, /^\s+start-end\+pri-flush\s+holds\s/m],
  },
  'npx mnlab run scenarios/cow-ordering.flush-at-end.yaml --mode random --seed 7 --executions 500': {
    stdout: [
      /mode random, seed 7/,
      /^\s+start-end\s+violated\s+forbid\s+ok\s+forbid\s/m,
      /not proven \(random: 500 schedules, no violation\)/,
    ],
  },
  'npx mnlab replay scenarios/upgrade-loop.smmu-no-btm.yaml --policy start-end --schedule "C0 C0 D0 D0 D0 D0 D0 D0"':
    {
      stdout: [
        /^policy start-end, schedule of 8 steps/m,
        /^\[0\] C0$/m,
        /^outcome: livelock$/m,
        /^violation: progress at step \d+/m,
      ],
    },
  'npx mnlab replay scenarios/cow-ordering.invalidate-range-needed.yaml --policy all --schedule "C0 C0 C0 C0 C1 D1 C0 C0 C1 C1 C1 C1 C1 C2 C2 D0 D0"':
    {
      stdout: [
        /^== start-end: violated forbid ==$/m,
        /^== invalidate-range: holds on this schedule ==$/m,
        /^== arch-hook: holds on this schedule ==$/m,
        /^start-end\s+violated forbid; ran \d+ steps, skipped 0$/m,
      ],
    },
  'npx mnlab distinguish scenarios/cow-ordering.invalidate-range-needed.yaml --policies start-end,arch-hook':
    {
      stdout: [
        /^distinguish start-end vs arch-hook: found a distinguishing schedule of 17 entries/m,
        /^schedule \(17 entries, then the reference schedule\): C0 /m,
        /^start-end: violated forbid$/m,
        /^arch-hook: holds on this schedule$/m,
        /^first difference: aligned row \d+/m,
      ],
    },
  'npx mnlab synthesize scenarios/munmap-uaf.flush-at-start.yaml scenarios/migrate.flush-at-start.yaml scenarios/upgrade-loop.smmu-no-btm.yaml':
    {
      stdout: [
        /^synthesize: 3 scenarios, 16 candidate sites, objective sim_ns$/m,
        /^minimal correct placements \(every scenario in scope holds, no site can go\), cheapest first: \d+$/m,
        /^ {5}needs flush_tlb_page: without it \[3\] upgrade-loop\.smmu-no-btm\.yaml is violated \(progress\)$/m,
        /^ {7}mnlab replay scenarios\/upgrade-loop\.smmu-no-btm\.yaml --policy sites:\S+ --schedule "C0 C0 D0 D0 D0 D0"$/m,
        /^ {2}arch-hook\s+3\/3\s/m,
        /^Pareto front/m,
        /^search: 3 scenarios x 65,536 placements = 196,608 pairs; \d+ within each scenario's reached sites; \d+ explored/m,
      ],
    },
  'npx mnlab synthesize scenarios/upgrade-loop.smmu-no-btm.yaml --sites flush_tlb_page,ptep_set_access_flags,wp_page_reuse,iommu_page_response --objective secondary_invalidations --json':
    {
      stdout: [
        /^\{\n {2}"settings": \{\n {4}"objective": "secondary_invalidations",/,
        /"complete": true/,
        /"minimal": \[/,
        /"name": "sites:flush_tlb_page"/,
      ],
    },
  'npx mnlab check scenarios': {
    stdout: [
      /^ok {3}scenarios\/upgrade-loop\.smmu-no-btm\.yaml arch-hook: expect holds, holds/m,
      /^\d+ passed, 0 failed$/m,
    ],
  },
  'npm run bench': {
    budget: ['--', '--quick'],
    stdout: [
      /^start-up \(whole process/m,
      /^mnlab --version\s+\d+\s+\d+\s+[\d.]+x\s+1$/m,
      /^engine, one thread, exhaustive:/m,
      /upgrade-loop\.smmu-no-btm\.yaml\s+arch-hook\s+frames\s+holds\s+19\s/,
      /^GUI \(browser host/m,
    ],
  },
  'npx mnlab notebook check notebooks': {
    stdout: [/^ok {3}notebooks\/cow-ordering-2017\.mnlab\.yaml#/m, /^\d+ unchanged, 0 changed$/m],
  },
  'npx mnlab notebook export notebooks/cow-ordering-2017.mnlab.yaml --format html -o report.html': {
    stdout: [/^wrote report\.html \(HTML, \d+ bytes\)$/m],
    writes: 'report.html',
  },
  'npx mnlab notebook record notebooks/permission-upgrade-2023.mnlab.yaml --stale': {
    stdout: [/^recorded 0 experiments in notebooks\/permission-upgrade-2023\.mnlab\.yaml$/m],
  },
  'npx mnlab notebook record notebooks/permission-upgrade-2023.mnlab.yaml --pin': {
    stdout: [/^recorded [1-9]\d* experiments in notebooks\/permission-upgrade-2023\.mnlab\.yaml$/m],
  },
  'npm run crash-test': {
    budget: ['--', '10'],
    stdout: [/^crash test: 10 SIGKILLs during saves/m, /^PASS$/m],
  },
  'npm ci && npm run dist': {
    skip: 'npm run dist downloads electron-builder and Electron: a connected packaging machine only',
  },
}

let scratch = ''
beforeAll(() => {
  // A scratch project: links to everything, copies of what the commands write into.
  scratch = mkdtempSync(path.join(tmpdir(), 'mnlab-readme-'))
  for (const e of readdirSync(ROOT)) {
    if (e === '.git' || e === 'out' || e === 'test-results') continue
    if (e === 'notebooks' || e === 'scenarios')
      cpSync(path.join(ROOT, e), path.join(scratch, e), { recursive: true })
    else symlinkSync(path.join(ROOT, e), path.join(scratch, e))
  }
})
afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true })
})

function sh(
  command: string,
  extra: readonly string[],
): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-c', [command, ...extra].join(' ')], {
    cwd: scratch,
    encoding: 'utf8',
    timeout: 300_000,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, npm_config_update_notifier: 'false', npm_config_yes: 'true' },
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const commands = readmeCommands(README)

describe('README.md', () => {
  it('shows commands, each with an expectation here', () => {
    expect(commands.length).toBeGreaterThan(10)
    const unknown = commands.filter((c) => !(c in EXPECTED))
    expect(unknown, 'README commands without an expectation in readme.test.ts').toEqual([])
    const stale = Object.keys(EXPECTED).filter((c) => !commands.includes(c))
    expect(stale, 'expectations for commands the README no longer shows').toEqual([])
  })

  it('"Policies as call sites" lists every site, in the engine\'s order', () => {
    const rows = [...README.matchAll(/^\| `([a-z_]+)` \| [a-z-]+ \| /gm)].map((m) => m[1])
    expect(rows).toEqual([...SITE_NAMES])
  })

  it('scenarios/README.md names every invariant `expect` accepts', () => {
    const text = readFileSync(path.join(ROOT, 'scenarios', 'README.md'), 'utf8')
    const listed = /name of the invariant that must break\n\(([^)]*)\)/.exec(text)?.[1] ?? ''
    expect(listed.split(',').map((s) => s.trim().replace(/`/g, ''))).toEqual([...INVARIANTS])
  })
})

describe.each(commands.filter((c) => !EXPECTED[c]?.skip && !EXPECTED[c]?.server))('README: %s', (command) => {
  it('exits as documented and prints its result', () => {
    const want = EXPECTED[command]!
    const r = sh(command, want.budget ?? [])
    expect(r.code, `stderr: ${r.stderr}`).toBe(want.exit ?? 0)
    expect(r.stdout.trim().length).toBeGreaterThan(0)
    for (const re of want.stdout ?? []) expect(r.stdout).toMatch(re)
    if (want.writes) expect(existsSync(path.join(scratch, want.writes))).toBe(true)
  }, 300_000)
})

for (const command of commands.filter((c) => EXPECTED[c]?.skip)) {
  const why = `README: ${command} (not run here: ${EXPECTED[command]!.skip})`
  console.log(`[readme.test] skipped: ${why}`)
  it.skip(why, () => {})
}

describe('README: npm ci && npm start', () => {
  const npmCi = 'npm ci (not run here: .ci/run runs npm ci before npm test)'
  console.log(`[readme.test] skipped: ${npmCi}`)
  it.skip(npmCi, () => {})

  it('npm start builds quietly and prints one line, the URL, then serves the workbench', async () => {
    const child = spawn('npm', ['start', '--', '--port', '0'], {
      cwd: scratch,
      env: { ...process.env, npm_config_update_notifier: 'false' },
      detached: true,
    })
    let stdout = ''
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no URL in 120 s; stdout: ${stdout}; stderr: ${stderr}`)),
          120_000,
        )
        child.stdout.on('data', (d: Buffer) => {
          stdout += d.toString()
          const m = /^MMU Notifier Lab: (http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]+)$/m.exec(stdout)
          if (m) {
            clearTimeout(timer)
            resolve(m[1]!)
          }
        })
        child.on('exit', (code) => reject(new Error(`npm start exited ${code}; stderr: ${stderr}`)))
      })
      // npm's own "> pkg@version start" header, then exactly one line of ours: the URL.
      const ours = stdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('> '))
      expect(ours).toEqual([`MMU Notifier Lab: ${url}`])
      expect(stderr).not.toMatch(/built in|out\/renderer\/assets/)
      const page = await fetch(url)
      expect(page.status).toBe(200)
      expect(await page.text()).toContain('<div id="app">')
    } finally {
      process.kill(-child.pid!, 'SIGTERM')
    }
  }, 180_000)
})
