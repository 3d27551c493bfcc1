"""Trace contract v1: the single source of truth for what one logged router request looks like.

Everything that reads or writes traces (ingest, importers, synth, later stages) uses these specs;
`docs/trace-contract.md` is rendered from them (`beast traces contract`) and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

CONTRACT_VERSION = "1"


class Kind(StrEnum):
    STR = "string"
    INT = "integer"
    FLOAT = "number"
    BOOL = "boolean"
    TIMESTAMP = "timestamp"
    ENUM = "enum"
    INT_LIST = "list of integers"


class Reason(StrEnum):
    """Why a row was quarantined. Stable strings: dashboards and tests key on them."""

    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    OUT_OF_RANGE = "out_of_range"
    BAD_VALUE = "bad_value"
    BAD_TIMESTAMP = "bad_timestamp"
    INCONSISTENT = "inconsistent"
    DUPLICATE_ID = "duplicate_id"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_ENCODING = "bad_encoding"
    BAD_CSV_ROW = "bad_csv_row"


REASON_DOCS: dict[Reason, str] = {
    Reason.MISSING_FIELD: "a required field is absent, null or empty (also `error_type` when `status` is `error`)",
    Reason.BAD_TYPE: 'a value cannot be read as the field\'s type (e.g. `input_tokens: "many"`, `12.5`, `true`; '
    'a number that is `NaN` or infinite, as JSON `NaN` / `Infinity` or text `"NaN"`)',
    Reason.OUT_OF_RANGE: "a number or time outside its allowed range (negative tokens, quality > 1, year < 2000)",
    Reason.BAD_VALUE: "a value outside a closed set (`status` other than `ok` / `error`), or a text field other than "
    "`prompt` holding a control character (NUL, tab, newline, ...)",
    Reason.BAD_TIMESTAMP: "`timestamp` is neither RFC 3339 date-time text (`2024-03-01T12:00:00Z`; a date alone is "
    "not one) nor epoch milliseconds",
    Reason.INCONSISTENT: "fields contradict each other (`cached_input_tokens` > `input_tokens`)",
    Reason.DUPLICATE_ID: "`request_id` repeats an earlier row of this ingest, or is stored with different content "
    "(a row equal to its stored row is counted as already stored, however often it repeats: re-ingesting is "
    "idempotent)",
    Reason.BAD_JSON: "a JSONL line that is not valid JSON",
    Reason.NOT_AN_OBJECT: "a JSONL line that is valid JSON but not an object",
    Reason.BAD_ENCODING: "a line that is not valid UTF-8 (UTF-16 / UTF-32 text too: a byte order mark or NUL bytes)",
    Reason.BAD_CSV_ROW: "a CSV record with a different number of fields than the header",
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    required: bool
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    free_text: bool = False  # may hold control characters (newlines, tabs); every other text field may not

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.kind]


_ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.STR: pa.string(),
    Kind.INT: pa.int64(),
    Kind.FLOAT: pa.float64(),
    Kind.BOOL: pa.bool_(),
    Kind.TIMESTAMP: pa.timestamp("ms", tz="UTC"),
    Kind.ENUM: pa.string(),
    Kind.INT_LIST: pa.list_(pa.int64()),
}

STATUS_OK, STATUS_ERROR = "ok", "error"

FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("request_id", Kind.STR, True, "Unique id of the request; the dedupe key (integers are read as text)."),
    FieldSpec(
        "timestamp",
        Kind.TIMESTAMP,
        True,
        "When the request arrived: RFC 3339 date-time text (`2024-03-01T12:00:00.5Z`: seconds required, `T`, `t` "
        "or a space between date and time; an offset is honoured, text without one is read as UTC) or integer epoch "
        "milliseconds. Stored as UTC, millisecond precision; must fall in [2000, 2100).",
    ),
    FieldSpec("model", Kind.STR, True, "Model that served (or failed to serve) the request; key into the price table."),
    FieldSpec("input_tokens", Kind.INT, True, "Prompt tokens, cached ones included.", minimum=0),
    FieldSpec("output_tokens", Kind.INT, True, "Completion tokens; 0 is normal for a failed request.", minimum=0),
    FieldSpec(
        "status",
        Kind.ENUM,
        True,
        "Outcome of the request (read case-insensitively).",
        choices=(STATUS_OK, STATUS_ERROR),
    ),
    FieldSpec(
        "prompt",
        Kind.STR,
        False,
        "Prompt text, when the logger may keep it; free text (the one text field that may hold control characters "
        "such as newlines).",
        free_text=True,
    ),
    FieldSpec(
        "prompt_id", Kind.STR, False, "Stable id of the prompt: the same prompt sent to several models shares it."
    ),
    FieldSpec("latency_ms", Kind.FLOAT, False, "End-to-end latency in milliseconds.", minimum=0),
    FieldSpec(
        "cost_usd",
        Kind.FLOAT,
        False,
        "Cost in USD as billed; when absent it is computed from the price table (see `cost_source`).",
        minimum=0,
    ),
    FieldSpec(
        "cached_input_tokens", Kind.INT, False, "Input tokens served from a prompt cache (<= input_tokens).", minimum=0
    ),
    FieldSpec(
        "error_type",
        Kind.STR,
        False,
        "Error class (timeout, rate_limit, server_error, ...); required when status is error.",
    ),
    FieldSpec(
        "quality", Kind.FLOAT, False, "Answer quality label in [0, 1] (judge or user feedback).", minimum=0, maximum=1
    ),
    FieldSpec("variant", Kind.STR, False, "A/B arm that served the request (e.g. champion, challenger)."),
    FieldSpec("tenant", Kind.STR, False, "Customer / team the request is billed to."),
    FieldSpec("session_id", Kind.STR, False, "Conversation or session the request belongs to."),
    FieldSpec("task", Kind.STR, False, "Task family (chat, code, summarise, ...)."),
    FieldSpec(
        "prefix_blocks", Kind.INT_LIST, False, "Hashes of fixed-size prompt-prefix blocks (equal hash = shared prefix)."
    ),
    FieldSpec("cache_hit", Kind.BOOL, False, "Whether the response came from a cache (true/false, 1/0, yes/no)."),
    FieldSpec("cache_key", Kind.STR, False, "Key under which the response is (or would be) cached."),
)

FIELD_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)

# Columns the ingest adds beside the contract fields; every stored dataset row has them.
COST_LOGGED, COST_PRICE_TABLE, COST_UNKNOWN = "logged", "price_table", "cost_unknown"
STORED_EXTRA_DOCS: dict[str, str] = {
    "extra": "Unknown input fields of the row as one JSON object (null when there were none): kept, never dropped. "
    "`beast traces feedback` records where a `quality` label came from here: `quality_source`, `quality_labelled_at`, "
    "`quality_feedback` (file:row) and `quality_previous` (the label it replaced).",
    "cost_source": f"`{COST_LOGGED}` (cost_usd was in the row), `{COST_PRICE_TABLE}` (computed), or "
    f"`{COST_UNKNOWN}` (no price for the model at that time: cost_usd stays null, never 0).",
    "row_hash": "64-bit hash of the row's contract content; tells a re-ingested row from a conflicting one.",
    "source_file": "File the row was ingested from.",
    "source_row": "Row number in that file (JSONL: line; CSV: record after the header; Parquet: row), from 1.",
    "ingest_id": "Id of the ingest run that stored the row (names its quarantine file too).",
    "date": "UTC date of `timestamp`: the partition key of the dataset.",
}

STORE_SCHEMA = pa.schema(
    [pa.field(f.name, f.arrow_type) for f in FIELDS]
    + [
        pa.field("extra", pa.string()),
        pa.field("cost_source", pa.string()),
        pa.field("row_hash", pa.uint64()),
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int64()),
        pa.field("ingest_id", pa.string()),
        pa.field("date", pa.string()),
    ],
    metadata={"beast.trace_contract": CONTRACT_VERSION},
)


def render_markdown() -> str:
    """The contract as a Markdown document (what `docs/trace-contract.md` holds)."""

    def rng(f: FieldSpec) -> str:
        parts = []
        if f.minimum is not None:
            parts.append(f">= {f.minimum:g}")
        if f.maximum is not None:
            parts.append(f"<= {f.maximum:g}")
        if f.choices:
            parts.append(" / ".join(f"`{c}`" for c in f.choices))
        return ", ".join(parts)

    lines = [
        f"# Trace contract v{CONTRACT_VERSION}",
        "",
        "<!-- generated by `beast traces contract > docs/trace-contract.md`; edit traces/contract.py -->",
        "",
        "One row per request the router served, successful or failed. Accepted formats: JSONL (`.jsonl`,",
        "`.ndjson`), CSV (`.csv`, with a header) and Parquet (`.parquet`); `.gz` on the text formats. Text is",
        "UTF-8 (a leading byte order mark is skipped). A CSV file is separated by commas, semicolons or tabs: the one",
        "of these that splits the header into the most columns (a tie: comma); only an empty cell is absent (`NA`,",
        "`null` or `NaN` are text). A folder given to `beast ingest` stands for its trace files (not its subfolders).",
        'Numbers written as text (`"12"`) are read as numbers, so CSV and JSON mean the same thing.',
        "Fields not listed here are kept in the `extra` column of the dataset, never dropped or rejected.",
        "Blank lines of a JSONL file are not rows.",
        "",
        "## Fields",
        "",
        "| field | type | required | range | meaning |",
        "|---|---|---|---|---|",
    ]
    for f in FIELDS:
        lines.append(f"| `{f.name}` | {f.kind.value} | {'yes' if f.required else 'no'} | {rng(f)} | {f.doc} |")
    lines += [
        "",
        "## Quarantine reasons",
        "",
        "A row that breaks the contract is not stored: it goes to `<quarantine>/<ingest_id>.jsonl` with",
        "`source`, `row`, `reason`, `field`, `detail` (every problem found) and `raw` (the row as read:",
        "the JSONL line, the CSV cells, the Parquet values). For every input, rows read = rows accepted +",
        "rows quarantined.",
        "",
        "| reason | when |",
        "|---|---|",
    ]
    lines += [f"| `{r.value}` | {REASON_DOCS[r]} |" for r in Reason]
    lines += [
        "",
        "## Columns added by ingest",
        "",
        "| column | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | {v} |" for k, v in STORED_EXTRA_DOCS.items()]
    lines += [
        "",
        "## Price table",
        "",
        "YAML, USD per 1M tokens. A model maps to one price or to a list of prices with `effective_from`",
        "dates (a row is costed at the price in force at its timestamp). `cached_input` prices the",
        "`cached_input_tokens` (default: the input price):",
        "",
        "```yaml",
        "models:",
        "  gpt-3.5-turbo-1106: {input: 1.00, output: 2.00}",
        "  claude-2.1:",
        "    - {input: 8.00, output: 24.00, effective_from: 2023-11-21}",
        "    - {input: 6.00, output: 18.00, cached_input: 0.60, effective_from: 2024-06-01}",
        "```",
        "",
        "cost = (input_tokens - cached_input_tokens) x input + cached_input_tokens x cached_input +",
        "output_tokens x output, all / 1e6. A row before a model's first `effective_from`, or of a model",
        "without a price, gets `cost_source = cost_unknown` and a null cost: unknown is never counted as 0.",
        "",
    ]
    return "\n".join(lines)
