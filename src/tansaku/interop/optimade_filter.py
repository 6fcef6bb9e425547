"""The OPTIMADE filter language translated onto the store: optimade-python-tools parses, this turns the tree into
one SQLAlchemy condition over materials (no second database, every value a bound parameter).

Supported: id, type, last_modified, elements (HAS, HAS ALL, HAS ANY, HAS ONLY, LENGTH), nelements, nsites,
chemical_formula_reduced / _anonymous / _descriptive (all string operators), nperiodic_dimensions,
structure_features, space_group_it_number, and `_tansaku_<property>` for every stored property (numbers;
measured values, never a model's). Other providers' fields are unknown (never match, IS UNKNOWN holds); a
known OPTIMADE field we cannot filter on (positions, lattice) is 501 Not Implemented.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lark import Token, Transformer, v_args
from lark.exceptions import LarkError, VisitError
from sqlalchemy import ColumnElement, String, and_, cast, false, not_, or_, select, true
from sqlalchemy.sql.operators import eq, ge, gt, le, lt, ne

from tansaku.store.browse import has_element
from tansaku.store.filters import is_measured
from tansaku.store.tables import Material, Property

PREFIX = "tansaku"
OPERATORS: dict[str, Callable] = {"=": eq, "!=": ne, "<": lt, "<=": le, ">": gt, ">=": ge}
REVERSED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}
NOT_FILTERABLE = {"lattice_vectors", "cartesian_site_positions", "species", "species_at_sites", "dimension_types",
                  "elements_ratios", "chemical_formula_hill", "immutable_id", "assemblies",
                  "space_group_symmetry_operations_xyz", "space_group_symbol_hall",
                  "space_group_symbol_hermann_mauguin", "space_group_symbol_hermann_mauguin_extended"}


class FilterError(Exception):
    """A filter the server refuses: `status` 400 (malformed or unknown field) or 501 (valid but unsupported)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class Field:
    """A filterable OPTIMADE property (`name`): how each family of operators becomes SQL."""

    name: str

    def compare(self, op: str, value: Any) -> ColumnElement[bool]:
        raise FilterError(501, f"comparisons on {self.name} are not supported")

    def known(self) -> ColumnElement[bool]:
        return true()

    def fuzzy(self, kind: str, value: Any) -> ColumnElement[bool]:
        raise FilterError(501, f"{kind} on {self.name} is not supported")

    def has(self, mode: str, values: list[Any]) -> ColumnElement[bool]:
        raise FilterError(400, f"{self.name} is not a list: HAS does not apply")

    def length(self, op: str, value: Any) -> ColumnElement[bool]:
        raise FilterError(400, f"{self.name} is not a list: LENGTH does not apply")


@dataclass
class ColumnField(Field):
    name: str
    column: Any
    kind: type  # int, str or datetime
    nullable: bool = False

    def _value(self, value: Any) -> Any:
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise FilterError(400, f"{self.name} is a number; {value!r} is not")
        if self.kind is str and not isinstance(value, str):
            raise FilterError(400, f"{self.name} is a string; compare it with a quoted value, not {value!r}")
        if self.kind is datetime:
            try:
                return datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(tzinfo=None)
            except ValueError:
                raise FilterError(400, f"{self.name} takes an ISO 8601 time, not {value!r}") from None
        return value

    def compare(self, op: str, value: Any) -> ColumnElement[bool]:
        return OPERATORS[op](self.column, self._value(value))

    def known(self) -> ColumnElement[bool]:
        return self.column.is_not(None) if self.nullable else true()

    def fuzzy(self, kind: str, value: Any) -> ColumnElement[bool]:
        if self.kind is not str:
            return super().fuzzy(kind, value)
        text = self._value(value)
        method = {"CONTAINS": self.column.contains, "STARTS": self.column.startswith,
                  "ENDS": self.column.endswith}[kind]
        return method(text, autoescape=True)


class IdField(ColumnField):
    """Entry ids are the material ids as strings; equality uses the integer key (and its index)."""

    def __init__(self):
        super().__init__("id", cast(Material.id, String), str)

    def compare(self, op: str, value: Any) -> ColumnElement[bool]:
        text = self._value(value)
        if op in ("=", "!=") and text.isdigit() and not text.startswith("0"):
            return OPERATORS[op](Material.id, int(text))
        return super().compare(op, value)


@dataclass
class ConstantField(Field):
    """A property every entry has with the same value (type, nperiodic_dimensions, structure_features)."""

    name: str
    value: Any

    def compare(self, op: str, value: Any) -> ColumnElement[bool]:
        if isinstance(self.value, list):
            raise FilterError(400, f"{self.name} is a list: compare it with HAS or LENGTH")
        if not isinstance(value, type(self.value)):
            raise FilterError(400, f"{self.name} is a {type(self.value).__name__}; {value!r} is not")
        return true() if OPERATORS[op](self.value, value) else false()

    def fuzzy(self, kind: str, value: Any) -> ColumnElement[bool]:
        if not isinstance(self.value, str):
            return super().fuzzy(kind, value)
        test = {"CONTAINS": self.value.__contains__, "STARTS": self.value.startswith, "ENDS": self.value.endswith}
        return true() if test[kind](str(value)) else false()

    def has(self, mode: str, values: list[Any]) -> ColumnElement[bool]:
        if not isinstance(self.value, list):
            return super().has(mode, values)
        present = [v in self.value for v in values]
        result = {"ALL": all(present), "ANY": any(present), "ONE": any(present),
                  "ONLY": set(self.value) == set(values)}[mode]
        return true() if result else false()

    def length(self, op: str, value: Any) -> ColumnElement[bool]:
        if not isinstance(self.value, list):
            return super().length(op, value)
        return true() if OPERATORS[op](len(self.value), value) else false()


class ElementsField(Field):
    name = "elements"

    def has(self, mode: str, values: list[Any]) -> ColumnElement[bool]:
        if not all(isinstance(v, str) for v in values):
            raise FilterError(400, 'elements holds element symbols: quote them, e.g. elements HAS "O"')
        if mode == "ONLY":
            return Material.elements == ",".join(sorted(set(values)))
        clauses = [has_element(v) if v.isalpha() and len(v) <= 3 else false() for v in values]
        return and_(*clauses) if mode in ("ALL", "ONE") else or_(*clauses)

    def length(self, op: str, value: Any) -> ColumnElement[bool]:
        return OPERATORS[op](Material.nelements, value)


@dataclass
class PropertyField(Field):
    """`_tansaku_<name>`: true when the material has a measured value of the property that satisfies it."""

    name: str
    property_name: str

    def _rows(self, *condition) -> ColumnElement[bool]:
        # IN over the property's rows (found once through the name index), not EXISTS per material
        return Material.id.in_(select(Property.material_id).where(
            Property.name == self.property_name, is_measured(), Property.value.is_not(None), *condition))

    def compare(self, op: str, value: Any) -> ColumnElement[bool]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FilterError(400, f"{self.name} is a number; {value!r} is not")
        return self._rows(OPERATORS[op](Property.value, value))

    def known(self) -> ColumnElement[bool]:
        return self._rows()


class UnknownField(Field):
    """Another provider's field: it has no value here, so comparisons never hold and IS UNKNOWN always does."""

    def __init__(self, name: str):
        self.name = name

    def compare(self, op: str, value: Any) -> ColumnElement[bool]:
        return false()

    def known(self) -> ColumnElement[bool]:
        return false()

    def fuzzy(self, kind: str, value: Any) -> ColumnElement[bool]:
        return false()

    def has(self, mode: str, values: list[Any]) -> ColumnElement[bool]:
        return false()

    def length(self, op: str, value: Any) -> ColumnElement[bool]:
        return false()


def fields(property_names: list[str]) -> dict[str, Field]:
    """Every filterable field, with `_tansaku_<name>` for each stored property."""
    found: dict[str, Field] = {
        "id": IdField(),
        "type": ConstantField("type", "structures"),
        "last_modified": ColumnField("last_modified", Material.created_at, datetime),
        "elements": ElementsField(),
        "nelements": ColumnField("nelements", Material.nelements, int),
        "nsites": ColumnField("nsites", Material.nsites, int),
        "chemical_formula_reduced": ColumnField("chemical_formula_reduced", Material.formula_alphabetical, str),
        "chemical_formula_anonymous": ColumnField("chemical_formula_anonymous", Material.formula_anonymous, str),
        "chemical_formula_descriptive": ColumnField("chemical_formula_descriptive", Material.formula, str),
        "nperiodic_dimensions": ConstantField("nperiodic_dimensions", 3),
        "structure_features": ConstantField("structure_features", []),
        "space_group_it_number": ColumnField("space_group_it_number", Material.spacegroup_number, int, nullable=True),
        f"_{PREFIX}_source": ColumnField(f"_{PREFIX}_source", Material.source, str),
        f"_{PREFIX}_source_id": ColumnField(f"_{PREFIX}_source_id", Material.source_id, str),
    }
    for name in property_names:
        found[f"_{PREFIX}_{name}"] = PropertyField(f"_{PREFIX}_{name}", name)
    return found


class _ToSQL(Transformer):
    """Lark transformer: each grammar rule of the OPTIMADE filter becomes part of one SQL condition."""

    def __init__(self, known: dict[str, Field]):
        super().__init__()
        self.known = known

    def filter(self, children):
        return children[0] if children else true()

    def expression(self, children):
        return or_(*children) if len(children) > 1 else children[0]

    def expression_clause(self, children):
        return and_(*children) if len(children) > 1 else children[0]

    def expression_phrase(self, children):
        if len(children) == 2:  # NOT, then the phrase
            return not_(children[1])
        return children[0]

    @v_args(inline=True)
    def comparison(self, value):
        return value

    def property(self, children):
        if len(children) > 1:
            raise FilterError(501, f"nested properties ({'.'.join(map(str, children))}) are not supported")
        name = str(children[0])
        if name in self.known:
            return self.known[name]
        if name in NOT_FILTERABLE:
            raise FilterError(501, f"filtering on {name} is not supported by this server")
        if name.startswith("_") and name.count("_") >= 2 and name.split("_")[1] != PREFIX:
            return UnknownField(name)
        raise FilterError(400, f"{name!r} is not a known or searchable property")

    @v_args(inline=True)
    def string(self, token):
        return str(token)[1:-1].replace('\\"', '"').replace("\\\\", "\\")

    @v_args(inline=True)
    def number(self, token):
        return int(token) if token.type == "SIGNED_INT" else float(token)

    @v_args(inline=True)
    def signed_int(self, token):
        return int(token)

    @v_args(inline=True)
    def value(self, value):
        return value

    @v_args(inline=True)
    def constant(self, value):
        return value

    @v_args(inline=True)
    def non_string_value(self, value):
        return value

    def not_implemented_string(self, children):
        raise FilterError(501, "comparing a constant with a string is not supported")

    def value_list(self, children):
        values = [c for c in children if not isinstance(c, Token)]
        if len(values) != len(children):
            raise FilterError(501, "operators inside value lists are not supported")
        return values

    @v_args(inline=True)
    def value_op_rhs(self, operator, value):
        if isinstance(value, Field):
            raise FilterError(501, "comparing two properties is not supported")
        return lambda f: f.compare(str(operator), value)

    def known_op_rhs(self, children):
        is_known = str(children[-1]) == "KNOWN"
        return lambda f: f.known() if is_known else not_(f.known())

    def fuzzy_string_op_rhs(self, children):
        kind, value = str(children[0]), children[-1]
        if not isinstance(value, str):
            raise FilterError(400, f"{kind} takes a quoted string")
        return lambda f: f.fuzzy(kind, value)

    def set_op_rhs(self, children):
        words = [str(c) for c in children if isinstance(c, Token)]
        values = [c for c in children if not isinstance(c, Token)]
        if len(words) == 1:  # HAS value
            return lambda f: f.has("ONE", values)
        if words[1] in ("ALL", "ANY", "ONLY"):
            listed = values[0]
            return lambda f: f.has(words[1], listed)
        raise FilterError(501, f"HAS {words[1]} (an operator inside HAS) is not supported")

    def length_op_rhs(self, children):
        words = [str(c) for c in children if isinstance(c, Token)]
        value = children[-1]
        op = words[1] if len(words) > 1 else "="
        if not isinstance(value, int):
            raise FilterError(400, "LENGTH takes a whole number")
        return lambda f: f.length(op, value)

    def set_zip_op_rhs(self, children):
        raise FilterError(501, "zipped set comparisons (a:b HAS ...) are not supported")

    def property_zip_addon(self, children):
        raise FilterError(501, "zipped set comparisons (a:b HAS ...) are not supported")

    def property_first_comparison(self, children):
        field, rhs = children
        if not isinstance(field, Field):
            raise FilterError(501, "relationship filters are not supported")
        return rhs(field)

    def constant_first_comparison(self, children):
        value, operator, field = children
        if not isinstance(field, Field):
            raise FilterError(501, "comparing two constants is not supported")
        return field.compare(REVERSED[str(operator)], value)


_PARSER = None


def to_sql(text: str, property_names: list[str]) -> ColumnElement[bool]:
    """The SQL condition over materials that an OPTIMADE filter string means; FilterError when it cannot be."""
    global _PARSER
    from optimade.exceptions import BadRequest
    from optimade.filterparser import LarkParser

    if _PARSER is None:
        _PARSER = LarkParser(version=(1, 2, 0))
    try:
        tree = _PARSER.parse(text)
    except (BadRequest, LarkError) as exc:
        reason = " ".join(str(getattr(exc, "detail", exc)).split())[:300]
        raise FilterError(400, f"the filter {text!r} does not parse: {reason}") from None
    try:
        return _ToSQL(fields(property_names)).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, FilterError):
            raise exc.orig_exc from None
        raise
