/**
 * Self-contained reports of a notebook: Markdown, or one HTML file with inline CSS and SVG bars
 * (no scripts, no external assets). Note cells go through a tiny safe Markdown renderer: every
 * character is escaped first, then headings, paragraphs, lists, code spans and blocks, emphasis and
 * http(s) links are recognised.
 */
import { escapeHtml, markdownToHtml } from '../../api/markdown'
import { RECORDED_METRICS, recordedInvariant, referenceIndex } from '../../api/record'
import type {
  ExperimentCell,
  Notebook,
  RecordedPolicy,
  RecordedSynthesis,
  SynthesisCell,
} from '../../api/notebook'
import { referenceResult } from './format'
import { plural } from '../../engine'

const METRICS = RECORDED_METRICS
const INVARIANTS = ['use-after-free', 'stale-after-return', 'lost-write', 'lost-dirty', 'progress', 'forbid']
/** What a report says for an invariant a result recorded before per-invariant verdicts does not name. */
const NOT_RECORDED = 'not recorded'

function scenarioLabel(cell: ExperimentCell): string {
  return 'path' in cell.scenario ? cell.scenario.path : 'inline scenario'
}

function recipeLine(cell: ExperimentCell): string {
  const r = cell.recipe
  const parts = [`mode ${r.mode}`]
  if (r.mode === 'random')
    parts.push(`seed ${r.seed}`, `${r.executions} ${plural(r.executions, 'execution')}`)
  if (r.mode === 'scripted') parts.push(`schedule ${r.schedule.join(' ')}`)
  parts.push(`max ${r.max_states} ${plural(r.max_states, 'state')}`)
  return parts.join(', ')
}

function mdEscapeCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

function scheduleText(c: { schedule: readonly string[]; cycle: readonly string[] | null }): string {
  return c.schedule.join(' ') + (c.cycle ? `  then forever: ${c.cycle.join(' ')}` : '')
}

function synthesisRecipeLine(cell: SynthesisCell): string {
  const r = cell.recipe
  return [
    `${r.scenarios.length} scenario path${r.scenarios.length === 1 ? '' : 's'} (${r.scenarios.join(', ')})`,
    `candidate sites: ${r.sites === null ? 'all' : r.sites.join(', ')}`,
    `objective ${r.objective}`,
    ...(r.policies.length ? [`shown: ${r.policies.join(', ')}`] : []),
    `max ${r.max_states} states`,
  ].join('; ')
}

function synthesisReference(cell: SynthesisCell): RecordedSynthesis | null {
  return cell.results[referenceIndex(cell)] ?? null
}

const VERDICT_MARK: Readonly<Record<string, string>> = { holds: 'H', violated: 'V', unknown: '?' }

function synthesisMarkdown(cell: SynthesisCell): string[] {
  const out = [`## Synthesis: ${cell.title}`, '', `${synthesisRecipeLine(cell)}.`, '']
  const res = synthesisReference(cell)
  if (!res) return [...out, '_Not run yet._', '']
  out.push(
    `Result recorded ${res.at} with engine ${res.engine}${res.pinned ? ' (pinned)' : ''}${res.complete ? '' : '; incomplete: a budget left verdicts unknown'}.`,
    '',
  )
  out.push(`Minimal correct placements (cheapest first): ${res.minimal.length ? '' : 'none'}`, '')
  for (const m of res.minimal) {
    out.push(`- \`${m.placement}\` (cost ${m.cost})`)
    for (const n of m.needs)
      out.push(
        `  - needs \`${n.site}\`: without it ${n.scenario} is violated (${n.invariant}), schedule \`${scheduleText(n)}\``,
      )
  }
  out.push('', `| placement | held | cost | ${res.scenarios.map((_, i) => i + 1).join(' | ')} |`)
  out.push(`|---|---:|---:|${res.scenarios.map(() => '---|').join('')}`)
  for (const p of res.placements)
    out.push(
      `| ${mdEscapeCell(p.placement)} | ${p.held}/${res.scenarios.length} | ${p.cost} | ${p.verdicts.map((v) => VERDICT_MARK[v] ?? v).join(' | ')} |`,
    )
  out.push('', 'Scenarios: ' + res.scenarios.map((s, i) => `${i + 1} \`${s}\``).join(', ') + '.', '')
  out.push('Pareto front (scenarios held, cost):', '')
  for (const f of res.front)
    out.push(`- ${f.held}/${res.scenarios.length}, ${f.cost}: ${f.placements.join(', ')}`)
  out.push(
    '',
    `Search: ${res.search.explored} explored (${res.search.states} states), ${res.search.pruned} pruned by monotonicity, ${res.search.cost_runs} reference runs, ${(res.search.elapsed_ms / 1000).toFixed(1)} s.`,
    '',
  )
  return out
}

function synthesisHtml(cell: SynthesisCell): string {
  const s = [`<section class="experiment synthesis"><h2>Synthesis: ${escapeHtml(cell.title)}</h2>`]
  s.push(`<p>${escapeHtml(synthesisRecipeLine(cell))}.</p>`)
  const res = synthesisReference(cell)
  if (!res) return s.join('\n') + '<p><em>Not run yet.</em></p></section>'
  s.push(
    `<p>Result recorded ${escapeHtml(res.at)} with engine ${escapeHtml(res.engine)}${res.pinned ? ' (pinned)' : ''}${res.complete ? '' : '; incomplete: a budget left verdicts unknown'}.</p>`,
  )
  const items = res.minimal.map(
    (m) =>
      `<li><code>${escapeHtml(m.placement)}</code> (cost ${m.cost})<ul>${m.needs
        .map(
          (n) =>
            `<li>needs <code>${escapeHtml(n.site)}</code>: without it ${escapeHtml(n.scenario)} is violated (${escapeHtml(n.invariant)}), schedule <code>${escapeHtml(scheduleText(n))}</code></li>`,
        )
        .join('')}</ul></li>`,
  )
  s.push(`<h3>Minimal correct placements</h3>${items.length ? `<ol>${items.join('')}</ol>` : '<p>none</p>'}`)
  s.push(
    '<table class="verdicts"><tr><th>placement</th><th>held</th><th>cost</th>' +
      res.scenarios.map((x, i) => `<th title="${escapeHtml(x)}">${i + 1}</th>`).join('') +
      '</tr>',
  )
  for (const p of res.placements)
    s.push(
      `<tr><td>${escapeHtml(p.placement)}</td><td class="num">${p.held}/${res.scenarios.length}</td><td class="num">${p.cost}</td>` +
        p.verdicts.map((v) => `<td class="${v}">${VERDICT_MARK[v] ?? escapeHtml(v)}</td>`).join('') +
        '</tr>',
    )
  s.push('</table>')
  s.push(
    `<p>Scenarios: ${res.scenarios.map((x, i) => `${i + 1} <code>${escapeHtml(x)}</code>`).join(', ')}.</p>`,
  )
  s.push(
    `<h3>Pareto front</h3><table><tr><th>held</th><th>cost</th><th>placements</th></tr>${res.front
      .map(
        (f) =>
          `<tr><td class="num">${f.held}/${res.scenarios.length}</td><td class="num">${f.cost}</td><td>${f.placements.map(escapeHtml).join(', ')}</td></tr>`,
      )
      .join('')}</table>`,
  )
  s.push('</section>')
  return s.join('\n')
}

export function exportMarkdown(nb: Notebook): string {
  const out: string[] = [`# ${nb.title}`, '']
  for (const cell of nb.cells) {
    if (cell.kind === 'note') {
      out.push(cell.markdown.trimEnd(), '')
      continue
    }
    if (cell.kind === 'synthesis') {
      out.push(...synthesisMarkdown(cell))
      continue
    }
    out.push(`## Experiment: ${cell.title}`, '')
    out.push(`Scenario: \`${scenarioLabel(cell)}\`; ${recipeLine(cell)}.`, '')
    if ('inline' in cell.scenario) out.push('```yaml', cell.scenario.inline.trimEnd(), '```', '')
    const res = referenceResult(cell)
    if (!res) {
      out.push('_Not run yet._', '')
      continue
    }
    out.push(`Result recorded ${res.at} with engine ${res.engine}${res.pinned ? ' (pinned)' : ''}.`, '')
    out.push('| policy | verdict | ' + INVARIANTS.join(' | ') + ' | expected | matches |')
    out.push('|---|---|' + INVARIANTS.map(() => '---|').join('') + '---|---|')
    for (const p of res.policies) {
      const inv = INVARIANTS.map((i) => recordedInvariant(p, i) ?? NOT_RECORDED)
      out.push(
        `| ${mdEscapeCell(p.policy)} | **${p.verdict}** | ${inv.join(' | ')} | ${p.expected ?? '-'} | ${
          p.matches === null ? '-' : p.matches ? 'yes' : 'NO'
        } |`,
      )
    }
    out.push('', '| policy | ' + METRICS.join(' | ') + ' |', '|---|' + METRICS.map(() => '---:|').join(''))
    for (const p of res.policies)
      out.push(`| ${mdEscapeCell(p.policy)} | ${METRICS.map((m) => p.metrics[m]).join(' | ')} |`)
    out.push('')
    for (const p of res.policies) {
      if (p.cut_reason && p.verdict !== 'violated') out.push(`- ${p.policy}: ${p.verdict}: ${p.cut_reason}`)
      for (const c of p.counterexamples) {
        out.push(`- **${p.policy}**: \`${c.invariant}\`: ${c.why.replace(/\n/g, ' ')}`)
        out.push(`  schedule: \`${scheduleText(c)}\``)
      }
    }
    out.push('')
  }
  return (
    out
      .join('\n')
      .replace(/\n{3,}/g, '\n\n')
      .trimEnd() + '\n'
  )
}

function bars(res: { policies: readonly RecordedPolicy[] }, metric: (typeof METRICS)[number]): string {
  const max = Math.max(1, ...res.policies.map((p) => p.metrics[metric]))
  const rowH = 18
  const labelW = 260
  const barW = 300
  const h = res.policies.length * rowH + 4
  const rows = res.policies.map((p, i) => {
    const v = p.metrics[metric]
    const w = Math.round((v / max) * barW)
    const y = i * rowH + 2
    return (
      `<text x="0" y="${y + 13}" font-size="12">${escapeHtml(p.policy)}</text>` +
      `<rect x="${labelW}" y="${y + 2}" width="${w}" height="${rowH - 6}" fill="#4a7fb5"/>` +
      `<text x="${labelW + w + 4}" y="${y + 13}" font-size="12">${v}</text>`
    )
  })
  return (
    `<figure><figcaption>${metric}</figcaption>` +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + barW + 80}" height="${h}" role="img" aria-label="${metric}">` +
    rows.join('') +
    `</svg></figure>`
  )
}

const CSS = `body{font:15px/1.45 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #bbb;padding:2px 8px;text-align:left}
td.num{text-align:right}.violated{background:#f6d0d0}.holds{background:#d4ecd4}.unknown{background:#eee}.not-recorded{color:#777;font-style:italic}
pre{background:#f4f4f4;padding:.6em;overflow:auto}code{font-family:ui-monospace,monospace}
section.experiment{border-top:2px solid #ccc;margin-top:1.5em}figure{margin:.3em 0}figcaption{font-size:12px;color:#555}
blockquote{border-left:3px solid #ccc;margin:.4em 0;padding-left:.8em;color:#444}`

export function exportHtml(nb: Notebook): string {
  const body: string[] = [`<h1>${escapeHtml(nb.title)}</h1>`]
  for (const cell of nb.cells) {
    if (cell.kind === 'note') {
      body.push(`<section class="note">${markdownToHtml(cell.markdown)}</section>`)
      continue
    }
    if (cell.kind === 'synthesis') {
      body.push(synthesisHtml(cell))
      continue
    }
    const s: string[] = [`<section class="experiment"><h2>Experiment: ${escapeHtml(cell.title)}</h2>`]
    s.push(
      `<p>Scenario: <code>${escapeHtml(scenarioLabel(cell))}</code>; ${escapeHtml(recipeLine(cell))}.</p>`,
    )
    if ('inline' in cell.scenario) s.push(`<pre><code>${escapeHtml(cell.scenario.inline)}</code></pre>`)
    const res = referenceResult(cell)
    if (!res) {
      s.push('<p><em>Not run yet.</em></p></section>')
      body.push(s.join('\n'))
      continue
    }
    s.push(
      `<p>Result recorded ${escapeHtml(res.at)} with engine ${escapeHtml(res.engine)}${res.pinned ? ' (pinned)' : ''}.</p>`,
    )
    s.push(
      '<table class="verdicts"><tr><th>policy</th><th>verdict</th>' +
        INVARIANTS.map((i) => `<th>${i}</th>`).join('') +
        '<th>expected</th><th>matches</th></tr>',
    )
    for (const p of res.policies) {
      const inv = INVARIANTS.map((i) => {
        const v = recordedInvariant(p, i)
        return v === null ? `<td class="not-recorded">${NOT_RECORDED}</td>` : `<td class="${v}">${v}</td>`
      })
      s.push(
        `<tr><td>${escapeHtml(p.policy)}</td><td class="${p.verdict}"><strong>${p.verdict}</strong></td>${inv.join('')}` +
          `<td>${escapeHtml(p.expected ?? '-')}</td><td>${p.matches === null ? '-' : p.matches ? 'yes' : 'NO'}</td></tr>`,
      )
    }
    s.push('</table>')
    s.push(
      '<table class="metrics"><tr><th>policy</th>' + METRICS.map((m) => `<th>${m}</th>`).join('') + '</tr>',
    )
    for (const p of res.policies)
      s.push(
        `<tr><td>${escapeHtml(p.policy)}</td>${METRICS.map((m) => `<td class="num">${p.metrics[m]}</td>`).join('')}</tr>`,
      )
    s.push('</table>')
    for (const m of METRICS) if (res.policies.some((p) => p.metrics[m] > 0)) s.push(bars(res, m))
    const cex: string[] = []
    for (const p of res.policies) {
      if (p.cut_reason && p.verdict !== 'violated')
        cex.push(`<li>${escapeHtml(p.policy)}: ${p.verdict}: ${escapeHtml(p.cut_reason)}</li>`)
      for (const c of p.counterexamples)
        cex.push(
          `<li><strong>${escapeHtml(p.policy)}</strong>: <code>${escapeHtml(c.invariant)}</code>: ${escapeHtml(c.why)}` +
            `<br>schedule: <code>${escapeHtml(scheduleText(c))}</code></li>`,
        )
    }
    if (cex.length) s.push(`<h3>Counterexamples</h3><ul>${cex.join('')}</ul>`)
    s.push('</section>')
    body.push(s.join('\n'))
  }
  return (
    `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">` +
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">` +
    `<title>${escapeHtml(nb.title)}</title><style>${CSS}</style></head>\n<body>\n${body.join('\n')}\n</body></html>\n`
  )
}

export function exportNotebook(nb: Notebook, format: 'markdown' | 'html'): string {
  return format === 'html' ? exportHtml(nb) : exportMarkdown(nb)
}
