"""Turn the docstrings' citations of documentation pages into links on the built site.

Docstrings cite pages by their path in the repository (``docs/theory.md#heavy-ball-flow``), which
reads well in a terminal or an editor; on the site the same text becomes a link to the page and
section.
"""

import re

from mkdocs.utils import get_relative_url

_CITATION = re.compile(r"(?<![\w/.])docs/([\w-]+)\.md(#[\w-]+)?")


def on_page_content(html, page, config, files):
    if not page.file.src_uri.startswith("api/"):
        return html

    def link(match):
        target = files.get_file_from_path(f"{match.group(1)}.md")
        if target is None:  # not a page: leave the text alone (the site build still passes)
            return match.group(0)
        url = get_relative_url(target.url, page.url) + (match.group(2) or "")
        return f'<a href="{url}">{match.group(0)}</a>'

    return _CITATION.sub(link, html)
