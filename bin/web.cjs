#!/usr/bin/env node
'use strict'
// Launcher for the browser host (`npm run web`): runs src-main/node/webMain.ts through tsx's
// CommonJS hook, like bin/mnlab.cjs. Arguments: --port N (default 5199, 0: any), --scenarios DIR.
require('tsx/cjs')
require('../src-main/node/webMain.ts')
