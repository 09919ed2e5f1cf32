#!/usr/bin/env node
'use strict'
// The browser host (`npm run web`, and `npm start` without an Electron binary): the bundled
// src-main/node/webMain.ts (see bin/build.cjs), called explicitly. Arguments: --build (build
// the workbench first, quietly), --port N (default 5199, 0: any), --scenarios DIR. Serves the
// renderer built into out/renderer.
const path = require('node:path')

const argv = process.argv.slice(2)
const build = argv.indexOf('--build')
if (build >= 0) {
  argv.splice(build, 1)
  if (!require('./buildApp.cjs').buildApp()) process.exit(1)
}
require('./build.cjs')
  .loadBundle('web')
  .runWeb(argv, path.join(__dirname, '..', 'out', 'renderer'))
