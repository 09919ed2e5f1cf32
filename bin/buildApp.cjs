'use strict'
// `electron-vite build` (main, preload, renderer into out/), quietly: its ~30 lines of bundle
// sizes are shown only when the build fails, so `npm start` and `npm run web` print the URL,
// not a build log. Returns true on success.
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')

function buildApp() {
  process.stderr.write('Building the workbench...\n')
  let cli
  try {
    cli = path.join(
      path.dirname(require.resolve('electron-vite/package.json', { paths: [ROOT] })),
      'bin',
      'electron-vite.js',
    )
  } catch {
    process.stderr.write('The build needs electron-vite, a dev dependency: run `npm ci` first.\n')
    return false
  }
  const r = spawnSync(process.execPath, [cli, 'build'], { cwd: ROOT, encoding: 'utf8' })
  if (r.status === 0) return true
  process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}`)
  process.stderr.write(`The build failed (electron-vite build, exit ${r.status ?? r.signal}).\n`)
  return false
}

module.exports = { buildApp }
