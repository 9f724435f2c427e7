"""Content templates: Jinja2, validated against what a customer record provides, output escaped.

Two kinds, by file name:

- `*.html.j2`: an email body. Rendered with HTML autoescaping: every value a template prints is
  escaped (`<script>` in a product name becomes `&lt;script&gt;`).
- `*.json.j2`: a web banner or push payload. The file is JSON whose string values may hold Jinja
  expressions. Each string is rendered on its own (HTML-escaped, because banners are put into web
  pages) and the document is written with `json.dumps`, so a value can never break the JSON.

Subject lines (email) and titles (push) are one-line Jinja strings, HTML-escaped as well, with
line breaks removed so a value cannot inject a mail header.

Validation happens when the catalogue is loaded, not when a message is sent: every variable a
template or subject reads must be one the render context provides (CONTEXT below), attribute by
attribute, including through `{% for %}` loops and in branches that a given customer would not
reach. Rendering also uses StrictUndefined, so anything validation missed fails loudly instead of
printing an empty string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import meta, nodes

# What the render context provides. A dict is a record (its keys are the attributes a template
# may read); a list holds records of the given shape. Values may be None (printed as "").
CUSTOMER = ("first_name", "rfm_segment", "rule_segment", "cluster_description", "top_category", "last_device")
PRODUCT = ("product_id", "product_name", "category", "rank")
CONTEXT: dict[str, tuple[str, ...] | list[tuple[str, ...]]] = {
    "customer": CUSTOMER,
    "recommendations": [PRODUCT],  # the customer's top recommended products (up to 3), best first
    "cart_items": [PRODUCT],  # products added to the cart in the last 7 days and not bought since (up to 5)
    "offer": ("code", "description", "discount_percent"),  # only for actions that have an offer
    "action": ("id", "channel"),
    "variant": ("id",),
}
# names Jinja itself provides inside templates
BUILTINS = {"loop", "range", "true", "false", "none", "True", "False", "None"}


class TemplateError(ValueError):
    """A template that cannot be used; the message names the template and the variable."""


def _finalize(value):
    return "" if value is None else value


def environment(autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


HTML_ENV = environment(autoescape=True)


def _check_names(source: str, where: str, provided: set[str], env: jinja2.Environment = HTML_ENV) -> set[str]:
    """Raise TemplateError if `source` reads a variable or attribute CONTEXT does not provide.
    Returns the top-level context names it reads."""
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{where}: line {e.lineno}: {e.message}") from e
    # names bound inside the template (loop targets, {% set %}) and what they stand for
    bound: dict[str, tuple[str, ...] | None] = {}
    for node in ast.find_all(nodes.For):
        shape = None
        if isinstance(node.iter, nodes.Name) and isinstance(CONTEXT.get(node.iter.name), list):
            shape = CONTEXT[node.iter.name][0]
        for target in node.target.find_all(nodes.Name) if not isinstance(node.target, nodes.Name) else [node.target]:
            bound[target.name] = shape
    for node in ast.find_all(nodes.Assign):
        for target in node.target.find_all(nodes.Name) if not isinstance(node.target, nodes.Name) else [node.target]:
            bound[target.name] = None
    used = meta.find_undeclared_variables(ast)
    unknown = sorted(used - set(CONTEXT) - BUILTINS - set(bound))
    if unknown:
        raise TemplateError(
            f"{where}: uses variable '{unknown[0]}', which no customer record provides; "
            f"available: {', '.join(sorted(CONTEXT))}"
        )
    missing = sorted((used & set(CONTEXT)) - provided)
    if missing:
        raise TemplateError(f"{where}: uses '{missing[0]}', which this action does not provide (it has no {missing[0]})")
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        base = node.node
        if not isinstance(base, nodes.Name):
            continue
        attr = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if not isinstance(attr, str):
            continue  # an index into a list (recommendations[0]): checked by the attribute read from it
        shape = CONTEXT.get(base.name) if base.name not in bound else bound[base.name]
        if isinstance(shape, list):
            raise TemplateError(f"{where}: '{base.name}.{attr}': {base.name} is a list; loop over it")
        if shape is not None and attr not in shape:
            raise TemplateError(
                f"{where}: uses '{base.name}.{attr}', which no customer record provides; "
                f"{base.name} has: {', '.join(shape)}"
            )
    # recommendations[0].product_name: an attribute of an indexed list element
    for node in ast.find_all(nodes.Getattr):
        inner = node.node
        if isinstance(inner, nodes.Getitem) and isinstance(inner.node, nodes.Name):
            shape = CONTEXT.get(inner.node.name)
            if isinstance(shape, list) and node.attr not in shape[0]:
                raise TemplateError(
                    f"{where}: uses '{inner.node.name}[...].{node.attr}', which no customer record provides; "
                    f"an element has: {', '.join(shape[0])}"
                )
    return used & set(CONTEXT)


@dataclass(frozen=True)
class Template:
    """A validated template, compiled once and rendered per message."""

    name: str
    kind: str  # "html" or "json"
    source: str
    uses: frozenset[str]  # the context names it reads

    def render(self, context: dict) -> str:
        if self.kind == "html":
            return _compiled_html(self.source).render(context)
        return json.dumps(_render_json(_compiled_json(self.source), context), ensure_ascii=False, sort_keys=False)


_HTML_CACHE: dict[str, jinja2.Template] = {}
_JSON_CACHE: dict[str, object] = {}


def _compiled_html(source: str) -> jinja2.Template:
    t = _HTML_CACHE.get(source)
    if t is None:
        t = _HTML_CACHE[source] = HTML_ENV.from_string(source)
    return t


def _compile_tree(value):
    if isinstance(value, str):
        return HTML_ENV.from_string(value) if ("{{" in value or "{%" in value) else value
    if isinstance(value, list):
        return [_compile_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: _compile_tree(v) for k, v in value.items()}
    return value


def _compiled_json(source: str):
    t = _JSON_CACHE.get(source)
    if t is None:
        t = _JSON_CACHE[source] = _compile_tree(json.loads(source))
    return t


def _render_json(tree, context: dict):
    if isinstance(tree, jinja2.Template):
        return tree.render(context)
    if isinstance(tree, list):
        return [_render_json(v, context) for v in tree]
    if isinstance(tree, dict):
        return {k: _render_json(v, context) for k, v in tree.items()}
    return tree


def _json_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _json_strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _json_strings(v)]
    return []


def load_template(path: Path, provided: set[str]) -> Template:
    """Read and validate one template file; `provided` is what the action's context holds."""
    where = f"template {path.name}"
    if not path.is_file():
        raise TemplateError(f"{where}: file not found: {path}")
    source = path.read_text(encoding="utf-8")
    if path.name.endswith(".html.j2"):
        return Template(path.name, "html", source, frozenset(_check_names(source, where, provided)))
    if path.name.endswith(".json.j2"):
        try:
            tree = json.loads(source)
        except json.JSONDecodeError as e:
            raise TemplateError(f"{where}: not valid JSON (line {e.lineno}): {e.msg}") from e
        if not isinstance(tree, dict):
            raise TemplateError(f"{where}: a JSON template must be an object")
        uses: set[str] = set()
        for s in _json_strings(tree):
            uses |= _check_names(s, where, provided)
        return Template(path.name, "json", source, frozenset(uses))
    raise TemplateError(f"{where}: a template file ends in .html.j2 (email) or .json.j2 (banner, push)")


@dataclass(frozen=True)
class Line:
    """A one-line template (subject, title): escaped, line breaks removed."""

    source: str
    uses: frozenset[str]

    def render(self, context: dict) -> str:
        return " ".join(_compiled_html(self.source).render(context).split())


def load_line(source: str, where: str, provided: set[str]) -> Line:
    return Line(source, frozenset(_check_names(source, where, provided)))
