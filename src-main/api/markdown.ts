/**
 * The notebooks' Markdown subset as HTML, shared by the HTML export (src-main/node/notebook/export.ts)
 * and the workbench's notebook view, so a note looks the same in both. Pure, no DOM: safe by
 * construction because the input is escaped before any markup is added (links: http/https only).
 */
export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;')
}

/** Inline Markdown on already-escaped text: code spans, links (http/https only), bold, italics. */
function inline(escaped: string): string {
  const codes: string[] = []
  let s = escaped.replace(/`([^`]+)`/g, (_m, c: string) => {
    codes.push(`<code>${c}</code>`)
    return `\uE000${codes.length - 1}\uE001`
  })
  s = s.replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, (_m, label: string, href: string) => {
    return `<a href="${href}">${label}</a>`
  })
  s = s.replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>')
  s = s.replace(/(^|[^*\w])\*([^*\s][^*]*)\*/g, '$1<em>$2</em>')
  return s.replace(/\uE000(\d+)\uE001/g, (m, i: string) => codes[Number(i)] ?? m)
}

/** Markdown to HTML, safe by construction: the input is escaped before any markup is added. */
export function markdownToHtml(md: string): string {
  const lines = escapeHtml(md.replace(/\r\n?/g, '\n')).split('\n')
  const out: string[] = []
  let para: string[] = []
  let quote: string[] = []
  let list: { tag: 'ul' | 'ol'; items: string[] } | null = null
  const flush = (): void => {
    if (para.length) out.push(`<p>${inline(para.join(' '))}</p>`)
    para = []
    if (quote.length) out.push(`<blockquote>${inline(quote.join(' '))}</blockquote>`)
    quote = []
    if (list)
      out.push(`<${list.tag}>${list.items.map((i) => `<li>${inline(i)}</li>`).join('')}</${list.tag}>`)
    list = null
  }
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const fence = /^```/.test(line)
    if (fence) {
      flush()
      const body: string[] = []
      for (i++; i < lines.length && !/^```/.test(lines[i]!); i++) body.push(lines[i]!)
      out.push(`<pre><code>${body.join('\n')}</code></pre>`)
      continue
    }
    const h = /^(#{1,6})\s+(.*)$/.exec(line)
    if (h) {
      flush()
      out.push(`<h${h[1]!.length + 1}>${inline(h[2]!)}</h${h[1]!.length + 1}>`)
      continue
    }
    const q = /^&gt;\s?(.*)$/.exec(line)
    if (q) {
      if (!quote.length) flush()
      quote.push(q[1]!)
      continue
    }
    if (quote.length) flush()
    const ul = /^\s*[-*]\s+(.*)$/.exec(line)
    const ol = /^\s*\d+[.)]\s+(.*)$/.exec(line)
    if (ul || ol) {
      const tag = ul ? 'ul' : 'ol'
      if (para.length || (list && list.tag !== tag)) flush()
      list ??= { tag, items: [] }
      list.items.push((ul ?? ol)![1]!)
      continue
    }
    if (line.trim() === '') {
      flush()
      continue
    }
    if (list && /^\s+\S/.test(line)) {
      list.items[list.items.length - 1] += ' ' + line.trim()
      continue
    }
    if (list) flush()
    para.push(line.trim())
  }
  flush()
  return out.join('\n')
}
