"""Reading plans (R2F, and R2F+ by their schema): one JSON document (a plan or a list of plans) or JSON lines, from a file or stdin,
bounded like every file a user gives rare (`rarecli.io.inputs`: size, encoding, nesting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rarecli.errors import InputError
from rarecli.io.inputs import loads, read_stdin, read_text
from rarecli.llm.schema import Plan
from rarecli.methods.r2f.options import R2F
from rarecli.methods.r2f_plus import schema as plus_schema
from rarecli.methods.r2f_plus.options import R2F_PLUS
from rarecli.methods.r2f_plus.schema import PlusPlan

AnyPlan = Plan | PlusPlan


def plan_kind_of(plan: AnyPlan) -> str:
    """The kind of plan it is, as methods declare the plans they read (`MethodSpec.plan_kind`)."""
    return R2F_PLUS if isinstance(plan, PlusPlan) else R2F


def read_plan(doc: Any, where: str) -> AnyPlan:
    """An R2F plan, or an R2F+ plan when the document says it is one (its `schema`)."""
    if isinstance(doc, dict) and doc.get("schema") == plus_schema.SCHEMA_ID:
        try:
            return PlusPlan.from_json(doc)
        except InputError as exc:
            raise InputError(f"{where}: {exc.message}", hint=exc.hint) from None
    return Plan.from_json(doc, where)


def parse_plans(text: str, where: str = "plan") -> list[AnyPlan]:
    """Plans in `text`: a JSON object, a JSON list of objects, or one object per line (blank lines skipped)."""
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{where} is empty", hint="pipe `rare r2f plan` into `rare r2f generate -`")
    try:
        whole = loads(stripped, where)
    except ValueError:
        whole = None
    if isinstance(whole, dict):
        return [read_plan(whole, where)]
    if isinstance(whole, list):
        return [read_plan(item, f"{where}[{i}]") for i, item in enumerate(whole)]
    plans = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = loads(line, f"{where}, line {number}")
        except ValueError as exc:
            raise InputError(
                f"{where}, line {number}: not JSON ({exc.msg})",
                hint="give one plan JSON per line, as `rare r2f plan` prints them",
            ) from None
        plans.append(read_plan(data, f"{where}, line {number}"))
    return plans


def read_plans(source: str) -> list[AnyPlan]:
    """Plans from a file path, or from stdin when `source` is '-'."""
    if source == "-":
        return parse_plans(read_stdin(), "stdin")
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(
            f"plan file not found: {source}", hint="pass a file written by `rare r2f plan`, or - for stdin"
        )
    return parse_plans(read_text(path, "plan file"), str(path))  # refuses FIFOs and folders, bounded
