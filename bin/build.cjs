'use strict'
// The built Node side of mnlab: esbuild bundles the CLI, the explore worker and the browser host
// into out/node/*.cjs, one file each with yaml, zod and cli-progress inside, so a command starts
// without transpiling TypeScript (tsx took ~2 s per call). The launchers (bin/mnlab.cjs,
// bin/web.cjs) call ensureBuilt() and then the bundle's exported entry function explicitly:
// nothing is guessed from process.argv, so the CLI runs under any name (npm's bin link, npx's
// cache, `npm link`, a symlink).
//
// Fresh by construction: build.json lists every input of the last build (from esbuild's
// metafile) with the build's start time; a source edited since then, a changed lockfile or a
// changed build script makes the next call rebuild (~0.3 s). Concurrent builds write to their
// own folder and rename files into place, so a racing process never loads half a file.
// Without esbuild (a production install) an existing build is used as it is.
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const OUT = path.join(ROOT, 'out', 'node')
const META = path.join(OUT, 'build.json')

/** Bundle name -> TypeScript entry. */
const ENTRIES = {
  mnlab: 'src-main/node/cli.ts',
  exploreWorker: 'src-main/node/exploreWorker.ts',
  web: 'src-main/node/webMain.ts',
}
/** Files that change a build without being one of its inputs. */
const ALSO = ['package-lock.json', 'bin/build.cjs']

function readMeta() {
  try {
    return JSON.parse(fs.readFileSync(META, 'utf8'))
  } catch {
    return null
  }
}

/** Why the build in out/node is stale, or null when it is fresh. */
function staleReason() {
  const meta = readMeta()
  if (!meta || !Array.isArray(meta.inputs)) return 'not built yet'
  for (const name of Object.keys(ENTRIES))
    if (!fs.existsSync(path.join(OUT, `${name}.cjs`))) return `out/node/${name}.cjs is missing`
  for (const rel of [...meta.inputs, ...ALSO]) {
    let st
    try {
      st = fs.statSync(path.join(ROOT, rel))
    } catch {
      return `${rel} is gone`
    }
    if (st.mtimeMs > meta.startedAt) return `${rel} changed`
  }
  return null
}

function loadEsbuild() {
  try {
    return require('esbuild')
  } catch {
    return null
  }
}

/** Bundles every entry; returns the folder. Throws with esbuild's located errors on failure. */
function build(esbuild) {
  const startedAt = Date.now()
  fs.mkdirSync(path.dirname(OUT), { recursive: true })
  const tmp = fs.mkdtempSync(path.join(path.dirname(OUT), '.node-build-'))
  try {
    const result = esbuild.buildSync({
      absWorkingDir: ROOT,
      entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([k, v]) => [k, v])),
      outdir: tmp,
      outExtension: { '.js': '.cjs' },
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      sourcemap: 'linked',
      metafile: true,
      logLevel: 'silent',
      // playwright-core is only for the GUI bench; it stays a runtime require (a dev dependency).
      external: ['playwright-core'],
    })
    const inputs = Object.keys(result.metafile.inputs)
    fs.mkdirSync(OUT, { recursive: true })
    for (const f of fs.readdirSync(tmp)) fs.renameSync(path.join(tmp, f), path.join(OUT, f))
    const metaTmp = path.join(OUT, `.build.json.${process.pid}`)
    fs.writeFileSync(metaTmp, JSON.stringify({ startedAt, inputs }, null, 1))
    fs.renameSync(metaTmp, META)
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  return OUT
}

/** Returns out/node with a bundle that matches the sources, building it first if needed. */
function ensureBuilt() {
  const why = staleReason()
  if (why === null) return OUT
  const esbuild = loadEsbuild()
  if (!esbuild) {
    if (fs.existsSync(path.join(OUT, 'mnlab.cjs'))) return OUT
    throw new Error('mnlab is not built and esbuild is not installed: run `npm ci` first')
  }
  if (process.env.MNLAB_BUILD_VERBOSE) process.stderr.write(`mnlab: building out/node (${why})\n`)
  return build(esbuild)
}

/** Loads a bundle (`mnlab`, `web`); on a build error prints it and exits 2. */
function loadBundle(name) {
  let dir
  try {
    dir = ensureBuilt()
  } catch (e) {
    const errors = e && Array.isArray(e.errors) ? e.errors : null
    if (errors) {
      for (const m of errors) {
        const loc = m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1}: ` : ''
        process.stderr.write(`mnlab: build failed: ${loc}${m.text}\n`)
      }
    } else process.stderr.write(`mnlab: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exit(2)
  }
  return require(path.join(dir, `${name}.cjs`))
}

module.exports = { ensureBuilt, loadBundle, staleReason, OUT, ENTRIES }

if (require.main === module) {
  // `node bin/build.cjs`: build now (npm's `prepare` runs this after `npm ci`).
  const esbuild = loadEsbuild()
  if (!esbuild) {
    process.stderr.write('bin/build.cjs: esbuild is not installed\n')
    process.exit(2)
  }
  build(esbuild)
}
