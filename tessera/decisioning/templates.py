"""Content templates: Jinja2, validated against what a customer record provides, output escaped.

Two kinds, by file name:

- `*.html.j2`: an email body. Rendered with HTML autoescaping: every value a template prints is
  escaped (`<script>` in a product name becomes `&lt;script&gt;`).
- `*.json.j2`: a web banner or push payload. The file is JSON whose string values may hold Jinja
  expressions. Each string is rendered on its own (HTML-escaped, because banners are put into web
  pages) and the document is written with `json.dumps`, so a value can never break the JSON.

Subject lines (email) and titles (push) are one-line Jinja strings rendered as plain text: an
email header and a notification title are not HTML, so escaping them would show `&amp;` to the
customer. Line breaks and other control characters are removed, so a value cannot add a mail
header; whoever shows a subject inside HTML escapes it (the preview index does).

Validation happens when the catalogue is loaded, not when a message is sent: every variable a
template or subject reads must be one the render context provides (CONTEXT below), attribute by
attribute, including through `{% for %}` loops and in branches that a given customer would not
reach. Rendering also uses StrictUndefined, so anything validation missed fails loudly instead of
printing an empty string.
"""

from __future__ import annotations

import functools
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import nodes

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
    "shop": ("name", "address", "sender"),  # the sender and the shop (tessera/decisioning/mailing.py)
    "unsubscribe": ("url",),  # email only: the link that revokes this customer's consent (mailing.py)
}
# every email template prints this link in an href (catalogue validation checks it: check_unsubscribe)
UNSUBSCRIBE_PLACEHOLDER = "{{ unsubscribe.url }}"
SAMPLE_UNSUBSCRIBE_URL = "https://unsubscribe.invalid/?token=sample"
# names Jinja itself provides inside templates
BUILTINS = {"range", "true", "false", "none", "True", "False", "None"}


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
TEXT_ENV = environment(autoescape=False)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# shapes: ("record", fields), ("list", element shape), SCALAR; None = unknown (nothing may be read from it)
SCALAR = ("scalar",)
LOOP = ("record", ("index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0",
                   "previtem", "nextitem", "cycle", "changed"))  # fmt: skip
# filters whose result is the list they were given (filtered or reordered), or one of its elements
SAME_LIST = {"reverse", "sort", "selectattr", "rejectattr", "unique", "list"}
ELEMENT = {"first", "last", "min", "max", "random"}
# filters naming an attribute of the elements: where the name is (keyword, or position among the args)
ATTRIBUTE_ARGS = {"map": ("attribute", None), "selectattr": (None, 0), "rejectattr": (None, 0), "sort": ("attribute", None),
                  "sum": ("attribute", None), "groupby": ("attribute", 0), "unique": ("attribute", None),
                  "min": ("attribute", None), "max": ("attribute", None)}  # fmt: skip
# template features that would read what validation cannot see, or switch escaping off
FORBIDDEN = {
    nodes.Include: "{% include %}", nodes.Import: "{% import %}", nodes.FromImport: "{% from ... import %}",
    nodes.Extends: "{% extends %}", nodes.Block: "{% block %}", nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}", nodes.FilterBlock: "{% filter %}",
    nodes.EvalContextModifier: "{% autoescape %}",  # also ScopedEvalContextModifier
}  # fmt: skip


def _shape_of(name: str):
    value = CONTEXT[name]
    return ("list", ("record", value[0])) if isinstance(value, list) else ("record", value)


def _label(node) -> str:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{_label(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem):
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            return f"{_label(node.node)}.{node.arg.value}"
        return f"{_label(node.node)}[...]"
    if isinstance(node, nodes.Filter):
        return f"({_label(node.node)}|{node.name})" if node.node is not None else f"|{node.name}"
    return "(expression)"


def _targets(target) -> list:
    """The names an assignment or loop binds: the one name, or each name of a tuple target."""
    return [target] if isinstance(target, nodes.Name) else list(target.find_all(nodes.Name))


def _plain_name(node) -> bool:
    """Whether `node` is a constant string (an attribute name written as a literal)."""
    return isinstance(node, nodes.Const) and isinstance(node.value, str)


def _element(shape):
    """The shape of a list's elements; None when `shape` is not a known list."""
    return shape[1] if shape is not None and shape[0] == "list" else None


class _Checker:
    """Walks a template's syntax tree with scopes: every value read must come from the render
    context (CONTEXT), attribute by attribute, or from a name the template bound to one.

    Statements and expressions are dispatched on their node kind (STATEMENTS, EXPRESSIONS below);
    a kind without a handler of its own has its children checked."""

    def __init__(self, where: str, provided: set[str]):
        self.where, self.provided, self.uses = where, provided, set()

    def fail(self, problem: str):
        raise TemplateError(f"{self.where}: {problem}")

    # statements

    def statements(self, body, scope: dict) -> None:
        for node in body:
            self.statement(node, scope)

    def statement(self, node, scope: dict) -> None:
        for kind, said in FORBIDDEN.items():
            if isinstance(node, kind):
                self.fail(f"line {node.lineno}: {said} is not allowed in a template (validation could not follow it)")
        for kind, check in self.STATEMENTS:
            if isinstance(node, kind):
                check(self, node, scope)
                return
        self._statement_children(node, scope)

    def _for(self, node, scope: dict) -> None:
        items = self.expr(node.iter, scope)
        if items is not None and items[0] != "list":
            self.fail(f"line {node.lineno}: {{% for %}} loops over a list; '{_label(node.iter)}' is not one")
        inner = dict(scope)
        for t in _targets(node.target):
            inner[t.name] = items[1] if items is not None and isinstance(node.target, nodes.Name) else None
        inner["loop"] = LOOP
        if node.test is not None:
            self.expr(node.test, inner)
        self.statements(node.body, inner)
        self.statements(node.else_, scope)

    def _assign(self, node, scope: dict) -> None:
        shape = self.expr(node.node, scope)
        for t in _targets(node.target):
            scope[t.name] = shape if isinstance(node.target, nodes.Name) else None

    def _assign_block(self, node, scope: dict) -> None:
        self.statements(node.body, scope)
        scope[node.target.name] = SCALAR

    def _with(self, node, scope: dict) -> None:
        inner = dict(scope)
        for target, value in zip(node.targets, node.values, strict=True):
            inner[target.name] = self.expr(value, scope)
        self.statements(node.body, inner)

    def _if(self, node, scope: dict) -> None:
        self.expr(node.test, scope)
        self.statements(node.body, scope)
        self.statements(node.elif_, scope)
        self.statements(node.else_, scope)

    def _output(self, node, scope: dict) -> None:
        for child in node.nodes:
            if not isinstance(child, nodes.TemplateData):
                self.expr(child, scope)

    def _statement_children(self, node, scope: dict) -> None:
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.Expr):
                self.expr(child, scope)
            else:
                self.statement(child, scope)

    STATEMENTS = (
        (nodes.For, _for),
        (nodes.Assign, _assign),
        (nodes.AssignBlock, _assign_block),
        (nodes.With, _with),
        (nodes.If, _if),
        (nodes.Output, _output),
    )

    # expressions: each returns the shape of the value, None when unknown

    def attribute(self, base, name: str, node):
        where = f"line {node.lineno}: uses '{_label(node)}'"
        if base is None:
            self.fail(f"{where}: '{_label(node.node)}' has no fields validation knows of")
        if base[0] == "record":
            if name not in base[1]:
                self.fail(f"{where}, which no customer record provides; {_label(node.node)} has: {', '.join(base[1])}")
            return SCALAR
        if base[0] == "list":
            self.fail(f"{where}: '{_label(node.node)}' is a list; loop over it or index it")
        self.fail(f"{where}: '{_label(node.node)}' is a single value, without fields")

    def expr(self, node, scope: dict):
        for kind, check in self.EXPRESSIONS:
            if isinstance(node, kind):
                return check(self, node, scope)
        self.walk(node, scope)
        return SCALAR

    def _name(self, node, scope: dict):
        if node.name in scope:
            return scope[node.name]
        if node.name in CONTEXT:
            if node.name not in self.provided:
                self.fail(f"uses '{node.name}', which this action does not provide (it has no {node.name})")
            self.uses.add(node.name)
            return _shape_of(node.name)
        if node.name in BUILTINS:
            return ("list", SCALAR) if node.name == "range" else SCALAR
        self.fail(
            f"line {node.lineno}: uses variable '{node.name}', which no customer record provides; "
            f"available: {', '.join(sorted(CONTEXT))}"
        )

    def _constant(self, node, scope: dict):
        return SCALAR

    def _getattr(self, node, scope: dict):
        return self.attribute(self.expr(node.node, scope), node.attr, node)

    def _getitem(self, node, scope: dict):
        base = self.expr(node.node, scope)
        if _plain_name(node.arg):
            return self.attribute(base, node.arg.value, node)
        self.expr(node.arg, scope) if not isinstance(node.arg, nodes.Slice) else self.walk(node.arg, scope)
        if base is None or base[0] != "list":
            self.fail(f"line {node.lineno}: '{_label(node.node)}' is not a list; it cannot be indexed")
        return base if isinstance(node.arg, nodes.Slice) else base[1]

    def _conditional(self, node, scope: dict):
        self.expr(node.test, scope)
        first = self.expr(node.expr1, scope)
        second = self.expr(node.expr2, scope) if node.expr2 is not None else first
        return first if first == second else None

    def _literal(self, node, scope: dict):
        self.walk(node, scope)
        return None

    def walk(self, node, scope: dict) -> None:
        for child in node.iter_child_nodes():
            self.expr(child, scope) if isinstance(child, nodes.Expr) else self.walk(child, scope)

    # filters

    def filter(self, node, scope: dict):
        if node.name == "safe":
            self.fail(f"line {node.lineno}: the safe filter would print '{_label(node.node)}' unescaped")
        base = self.expr(node.node, scope) if node.node is not None else None
        for arg in node.args:
            self.expr(arg, scope)
        for kw in node.kwargs:
            self.expr(kw.value, scope)
        attribute = self._filter_attribute(node)
        if node.name == "attr":
            return self._attr_filter(node, base)
        if attribute is not None:
            self._check_element_attribute(node, base, attribute)
            if node.name == "map":
                return ("list", SCALAR)
        return self._filter_result(node, base)

    def _filter_attribute(self, node) -> str | None:
        """The attribute of the elements a filter names (`map(attribute='x')`, `selectattr('x')`),
        None when it names none."""
        if node.name not in ATTRIBUTE_ARGS:
            return None
        keyword, position = ATTRIBUTE_ARGS[node.name]
        given = {kw.key: kw.value for kw in node.kwargs}.get(keyword) if keyword else None
        if given is None and position is not None and len(node.args) > position:
            given = node.args[position]
        if given is None:
            return None
        if not _plain_name(given):
            self.fail(f"line {node.lineno}: the {node.name} filter's attribute must be a plain name")
        return given.value

    def _attr_filter(self, node, base):
        name = node.args[0] if node.args else None
        if not _plain_name(name):
            self.fail(f"line {node.lineno}: the attr filter's attribute must be a plain name")
        return self.attribute(base, name.value, nodes.Getattr(node.node, name.value, "load", lineno=node.lineno))

    def _check_element_attribute(self, node, base, attribute: str) -> None:
        element = _element(base)
        if element is None or element[0] != "record" or attribute.split(".")[0] not in element[1]:
            fields = ", ".join(element[1]) if element and element[0] == "record" else "no known fields"
            self.fail(
                f"line {node.lineno}: the {node.name} filter reads '{attribute}' of the elements of "
                f"'{_label(node.node)}', which no customer record provides; an element has: {fields}"
            )

    @staticmethod
    def _filter_result(node, base):
        """The shape a filter returns, once its arguments are checked."""
        if node.name in SAME_LIST or node.name in ("default", "d"):
            return base
        if node.name in ELEMENT:
            return _element(base)
        return SCALAR

    EXPRESSIONS = (
        (nodes.Name, _name),
        ((nodes.Const, nodes.TemplateData), _constant),
        (nodes.Getattr, _getattr),
        (nodes.Getitem, _getitem),
        (nodes.Filter, filter),
        (nodes.CondExpr, _conditional),
        ((nodes.List, nodes.Tuple, nodes.Dict), _literal),
    )


def _check_names(source: str, where: str, provided: set[str], env: jinja2.Environment = HTML_ENV) -> set[str]:
    """Raise TemplateError if `source` reads a variable or attribute CONTEXT does not provide, or
    uses a feature validation cannot follow. Returns the top-level context names it reads."""
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{where}: line {e.lineno}: {e.message}") from e
    checker = _Checker(where, provided)
    checker.statements(ast.body, {})
    return checker.uses


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


def _compile(env: jinja2.Environment, source: str) -> jinja2.Template:
    """A compiled template whose globals are a plain dict. Jinja keeps them as a ChainMap of the
    template's and the environment's globals and walks that ChainMap twice per render (it copies
    it into the context and lists its keys): at 1M messages that was a third of the render. The
    environments' globals are set once at import and never change, so a copy is the same."""
    template = env.from_string(source)
    template.globals = dict(template.globals)
    return template


# each template source is compiled once per process, then rendered per message
@functools.cache
def _compiled_html(source: str) -> jinja2.Template:
    return _compile(HTML_ENV, source)


@functools.cache
def _compiled_text(source: str) -> jinja2.Template:
    return _compile(TEXT_ENV, source)


def _compile_tree(value):
    if isinstance(value, str):
        return _compile(HTML_ENV, value) if ("{{" in value or "{%" in value) else value
    if isinstance(value, list):
        return [_compile_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: _compile_tree(v) for k, v in value.items()}
    return value


@functools.cache
def _compiled_json(source: str):
    return _compile_tree(json.loads(source))


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
    """A one-line template (subject, title): plain text, control characters and line breaks removed."""

    source: str
    uses: frozenset[str]

    def render(self, context: dict) -> str:
        return " ".join(CONTROL.sub(" ", _compiled_text(self.source).render(context)).split())


def load_line(source: str, where: str, provided: set[str]) -> Line:
    return Line(source, frozenset(_check_names(source, where, provided)))


def sample_context(offer: dict | None = None, products: list[str] | None = None) -> dict:
    """A made-up customer's render context (no one's data): what validation renders an email
    with, and what the campaign report's previews show. `products`: names for the lists."""
    names = products or ["Enamel Mug", "Linen Tea Towel", "Oak Chopping Board"]
    items = [{"product_id": f"SAMPLE{i}", "product_name": n, "category": "Kitchen", "rank": i}
             for i, n in enumerate(names[:3], 1)]  # fmt: skip
    return {
        "customer": {"first_name": "Alex", "rfm_segment": "Loyal", "rule_segment": None,
                     "cluster_description": None, "top_category": "Kitchen", "last_device": "mobile"},
        "recommendations": items, "cart_items": items[:2], "offer": offer,
        "action": {"id": "sample", "channel": "email"}, "variant": {"id": "sample"},
        "shop": {"name": "Sample Shop", "address": "1 Sample Street", "sender": "Sample Shop <news@shop.example>"},
        "unsubscribe": {"url": SAMPLE_UNSUBSCRIBE_URL},
    }  # fmt: skip


def check_unsubscribe(template: Template, offer: dict | None) -> None:
    """An email template must print the unsubscribe link as a link: rendered for a sample customer,
    its HTML holds href="<the link>". TemplateError (naming the placeholder) otherwise."""
    if "unsubscribe" not in template.uses:
        raise TemplateError(
            f"template {template.name}: an email template must carry the unsubscribe link: "
            f'<a href="{UNSUBSCRIBE_PLACEHOLDER}">unsubscribe</a>'
        )
    try:
        body = template.render(sample_context(offer))
    except jinja2.TemplateError as e:
        raise TemplateError(f"template {template.name}: does not render for a sample customer: {e}") from e
    if f'href="{html.escape(SAMPLE_UNSUBSCRIBE_URL)}"' not in body:
        raise TemplateError(
            f"template {template.name}: reads unsubscribe.url but does not print it as a link's href: "
            f'write <a href="{UNSUBSCRIBE_PLACEHOLDER}">unsubscribe</a>'
        )
