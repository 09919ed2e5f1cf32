import { describe, expect, it } from 'vitest'
import { escapeHtml, markdownToHtml } from './markdown'

describe('markdownToHtml renders CommonMark (markdown-it)', () => {
  it('headings (one level down: the notebook title is the h1), paragraphs, lists, code, quotes, links', () => {
    const html = markdownToHtml(
      [
        '# Title <b>',
        '',
        'Para with `a<b>` and **bold** and *em* and [x](https://lkml.org/a?b=1&c=2).',
        'Second line of the paragraph.',
        '',
        '- one',
        '- two',
        '',
        '1. first',
        '2. second',
        '',
        '```',
        'code <here> & there',
        '```',
        '',
        '> quoted',
        '',
        '###### six',
        '',
        '[mail](mailto:someone@example.org)',
      ].join('\n'),
    )
    expect(html).toContain('<h2>Title &lt;b&gt;</h2>')
    expect(html).toContain(
      '<p>Para with <code>a&lt;b&gt;</code> and <strong>bold</strong> and <em>em</em> and <a href="https://lkml.org/a?b=1&amp;c=2">x</a>.\nSecond line of the paragraph.</p>',
    )
    expect(html).toContain('<ul>\n<li>one</li>\n<li>two</li>\n</ul>')
    expect(html).toContain('<ol>\n<li>first</li>\n<li>second</li>\n</ol>')
    expect(html).toContain('<pre><code>code &lt;here&gt; &amp; there\n</code></pre>')
    expect(html).toContain('<blockquote>\n<p>quoted</p>\n</blockquote>')
    expect(html).toContain('<h6>six</h6>')
    expect(html).toContain('<a href="mailto:someone@example.org">mail</a>')
  })

  it('an empty note renders as nothing', () => {
    expect(markdownToHtml('')).toBe('')
    expect(markdownToHtml('  \n\n')).toBe('')
  })
})

describe('a note cannot inject markup', () => {
  const cases: [string, string][] = [
    ['script tag', '<script>alert(1)</script>'],
    ['script in a list item', '- two <script>alert(1)</script>'],
    ['inline raw HTML with on* handler', 'text <img src=x onerror=alert(1)> more'],
    ['block raw HTML', '<div onclick="alert(1)">\n\nclick\n\n</div>'],
    ['iframe', '<iframe src="http://x"></iframe>'],
    ['svg onload', '<svg onload=alert(1)>'],
    ['style tag', '<style>body{display:none}</style>'],
    ['javascript: link', '[bad](javascript:alert(1))'],
    ['mixed-case javascript: link', '[bad](JaVaScRiPt:alert(1))'],
    ['entity-encoded javascript: link', '[bad](java&#115;cript:alert(1))'],
    ['javascript: link with spaces before', '[bad]( javascript:alert(1))'],
    ['vbscript: link', '[bad](vbscript:msgbox(1))'],
    ['data: link', '[bad](data:text/html,<script>alert(1)</script>)'],
    ['file: link', '[bad](file:///etc/passwd)'],
    ['reference-style javascript: link', '[bad][r]\n\n[r]: javascript:alert(1)'],
    ['javascript: autolink', '<javascript:alert(1)>'],
    ['image with javascript: src', '![x](javascript:alert(1))'],
    ['image with a remote src', '![x](https://example.org/track.png)'],
    ['attribute break-out in a link title', '[x](https://a.org "t\\" onmouseover=\\"alert(1)")'],
    ['attribute break-out in a link href', '[x](https://a.org/"onmouseover="alert(1))'],
  ]
  it.each(cases)('%s', (_name, note) => {
    const html = markdownToHtml(note)
    expect(html.length).toBeGreaterThan(0)
    // No element other than the ones markdown-it makes from Markdown syntax.
    const tags = [...html.matchAll(/<\/?([a-zA-Z0-9]+)/g)].map((m) => m[1]!.toLowerCase())
    for (const t of tags) expect(['p', 'a', 'ul', 'li', 'code', 'pre', 'strong', 'em']).toContain(t)
    expect(html).not.toMatch(/<(script|img|iframe|svg|style|div)\b/i)
    expect(html).not.toMatch(/href="(?!https?:|mailto:)/i)
    expect(html).not.toMatch(/\son[a-z]+="/i)
    expect(html).not.toMatch(/src="/i)
  })

  it('raw HTML comes out as visible text', () => {
    expect(markdownToHtml('[bad](javascript:alert(1)) <img src=x onerror=alert(1)>')).toBe(
      '<p>[bad](javascript:alert(1)) &lt;img src=x onerror=alert(1)&gt;</p>',
    )
    expect(markdownToHtml('<script>alert(1)</script>')).toBe('<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>')
  })

  it('a remote image is a link at most, never loaded', () => {
    expect(markdownToHtml('![x](https://example.org/t.png)')).toBe(
      '<p>!<a href="https://example.org/t.png">x</a></p>',
    )
  })
})

describe('escapeHtml', () => {
  it('escapes the five characters that matter in text and attributes', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe(
      '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;',
    )
  })
})
