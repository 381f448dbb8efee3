"""Safe display of HTML mail (DESIGN.md section 10): the HTML body cleaned by nh3 (the Ammonia sanitiser, an
HTML5 parser with an allow-list) before the API hands it to a frontend that will render it.

What survives: text formatting, tables, lists, links (``http``, ``https``, ``mailto``, ``tel``; with
``rel="noopener noreferrer"``), images, and inline ``style`` declarations of an allow-list of properties whose
value loads nothing.  What goes: scripts, ``<style>`` blocks, event handler attributes, ``javascript:`` /
``vbscript:`` / ``data:`` URLs (``data:`` stays only for raster images in ``<img src>``), forms and their controls,
frames, objects and embeds, ``<meta>`` (refresh), ``<base>``, ``<link>``, SVG and MathML, ``id``/``name``/
``class`` (no DOM clobbering of the page that shows the mail), comments, relative URLs (they would resolve against
the frontend's own origin), and CSS that could load or run something (``url()``, ``image-set()``,
``expression()``, ``@import``, escapes).

Images: ``cid:`` references become the URL the caller gives for that Content-ID (the inline attachment's download
URL); remote images (``http(s)://``, ``//host``) are replaced by a transparent pixel unless the caller allows them,
and :attr:`SanitisedHtml.has_remote_images` says whether there were any (so a frontend can offer "show images").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import nh3

#: A transparent 1x1 GIF: what a blocked remote image shows.
BLOCKED_IMAGE = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
_TEXT_TAGS = {
    "a", "abbr", "acronym", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center", "cite",
    "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure",
    "font", "h1", "h2", "h3", "h4", "h5", "h6", "hgroup", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p",
    "pre", "q", "rp", "rt", "ruby", "s", "samp", "small", "span", "strike", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var", "wbr",
}  # fmt: skip
#: Removed together with everything inside them.
_DROPPED_WITH_CONTENT = {
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "noscript", "noembed",
    "noframes", "template", "title", "xmp", "svg", "math", "select", "textarea", "head", "plaintext",
}  # fmt: skip
_COMMON_ATTRIBUTES = {"style", "title", "dir", "lang", "align", "valign", "width", "height", "bgcolor", "color"}
_ATTRIBUTES = {
    "*": _COMMON_ATTRIBUTES,
    "a": {"href"},
    "img": {"src", "alt", "border", "hspace", "vspace"},
    "font": {"face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "summary", "frame", "rules"},
    "td": {"colspan", "rowspan", "nowrap", "headers", "scope", "abbr", "axis"},
    "th": {"colspan", "rowspan", "nowrap", "headers", "scope", "abbr", "axis"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value", "type"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
    "time": {"datetime"},
    "bdo": {"dir"},
    "details": {"open"},
}
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid", "data"}
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")
#: CSS properties kept in ``style`` attributes: layout, box, colour, text; none takes an image or a URL.
_STYLE_PROPERTIES = frozenset({
    "background-color", "border", "border-bottom", "border-bottom-color", "border-bottom-style",
    "border-bottom-width", "border-collapse", "border-color", "border-left", "border-left-color",
    "border-left-style", "border-left-width", "border-radius", "border-right", "border-right-color",
    "border-right-style", "border-right-width", "border-spacing", "border-style", "border-top", "border-top-color",
    "border-top-style", "border-top-width", "border-width", "box-sizing", "caption-side", "clear", "color",
    "direction", "display", "empty-cells", "float", "font", "font-family", "font-size", "font-style", "font-variant",
    "font-weight", "height", "letter-spacing", "line-height", "list-style-position", "list-style-type", "margin",
    "margin-bottom", "margin-left", "margin-right", "margin-top", "max-height", "max-width", "min-height",
    "min-width", "opacity", "outline", "overflow", "overflow-wrap", "padding", "padding-bottom", "padding-left",
    "padding-right", "padding-top", "table-layout", "text-align", "text-decoration", "text-indent", "text-transform",
    "unicode-bidi", "vertical-align", "visibility", "white-space", "width", "word-break", "word-spacing",
    "word-wrap",
})  # fmt: skip
_CSS_DANGER = re.compile(r"url\s*\(|image-set|image\s*\(|expression|@import|javascript:|behavio(u)?r|binding|\\|/\*")
_RASTER_DATA = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp|bmp|avif);base64,[a-z0-9+/=\s]*$", re.IGNORECASE)
_SPACE_AND_CONTROLS = re.compile(r"[\x00-\x20\x7f]+")


@dataclass(frozen=True)
class SanitisedHtml:
    """The cleaned markup, and whether the original referenced remote images (blocked or not)."""

    html: str
    has_remote_images: bool


def _style(value: str) -> str | None:
    """Keep the declarations of allowed properties whose value loads and runs nothing."""
    kept = []
    for declaration in value.split(";"):
        name, colon, body = declaration.partition(":")
        name = name.strip().lower()
        if not colon or name not in _STYLE_PROPERTIES or _CSS_DANGER.search(body.lower()):
            continue
        kept.append(f"{name}:{body.strip()}")
    return ";".join(kept) or None


class _Filter:
    """The per-message attribute filter and relative-URL policy handed to nh3."""

    def __init__(self, inline_urls: Mapping[str, str], allow_remote_images: bool) -> None:
        self.inline_urls = {cid.strip("<>").lower(): url for cid, url in inline_urls.items()}
        self.produced = set(self.inline_urls.values())
        self.allow_remote_images = allow_remote_images
        self.has_remote_images = False

    def attribute(self, element: str, attribute: str, value: str) -> str | None:
        if attribute == "style":
            return _style(value)
        if attribute == "href" or (attribute == "cite" and element != "img"):
            return value if _SPACE_AND_CONTROLS.sub("", value).lower().startswith(_LINK_SCHEMES) else None
        if element == "img" and attribute == "src":
            return self._image(value)
        return value

    def _image(self, value: str) -> str | None:
        source = _SPACE_AND_CONTROLS.sub("", value)
        lowered = source.lower()
        if lowered.startswith("cid:"):
            return self.inline_urls.get(unquote(source[4:]).strip("<>").lower())
        if lowered.startswith(("http:", "https:", "//")):
            self.has_remote_images = True
            return source if self.allow_remote_images else BLOCKED_IMAGE
        if _RASTER_DATA.match(source):
            return source
        return None

    def relative(self, url: str) -> str | None:
        """Relative URLs resolve against the frontend's origin: only those this filter produced pass;
        protocol-relative ones (``//host/x``) are remote and become ``https:``."""
        if url in self.produced:
            return url
        if url.startswith("//"):
            return f"https:{url}"
        return None


def sanitise_html(
    markup: str, *, inline_urls: Mapping[str, str] | None = None, allow_remote_images: bool = False
) -> SanitisedHtml:
    """Clean an HTML body for display (see the module docstring).

    Args:
        markup: the decoded ``text/html`` body of a message.
        inline_urls: Content-ID (without ``<>``) -> URL that serves that inline part; ``cid:`` references to
            other Content-IDs are dropped.
        allow_remote_images: keep ``http(s)`` image sources (``?remoteImages=true``); blocked by default.
    """
    policy = _Filter(inline_urls or {}, allow_remote_images)
    cleaned = nh3.clean(
        markup,
        tags=_TEXT_TAGS,
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=policy.attribute,
        url_schemes=_URL_SCHEMES,
        url_relative=policy.relative,
        strip_comments=True,
        link_rel="noopener noreferrer",
    )
    return SanitisedHtml(cleaned, policy.has_remote_images)
