"""Generate ``vectors.json``: known answers for ``abtest.stats`` from the libraries experimenters trust.

The project's runtime is scipy-only and gbstats pins numpy<2, so the reference libraries live in a
throwaway environment that never touches the project's lock. From the repository root, run exactly::

    .tools/bin/uv run --isolated --no-project --python 3.11 --with gbstats==0.8.0 --with numpy==1.26.4 --with scipy==1.17.1 --with statsmodels==0.15.0 --with spotify-confidence==4.1.0 --with pandas==1.5.3 python tests/abtest/reference/generate.py

It writes ``tests/abtest/reference/vectors.json`` (sorted keys, seeded data: regenerating with the same
versions is byte-identical). Each case stores the inputs of *our* function (``kwargs``, arrays included),
the exact reference call (``source``), the reference's numbers mapped onto our result's fields
(``expected``) and the tolerance (``tol``). ``tests/abtest/test_reference_vectors.py`` reads only the JSON.

Sources, one module each: ``gen_frequentist.py`` (statsmodels, scipy, spotify-confidence, and gbstats'
delta-method ratio variance), ``gen_gbstats.py`` (gbstats: relative lift, Bayesian, sequential),
``gen_power.py`` (statsmodels power).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen_frequentist  # noqa: E402
import gen_gbstats  # noqa: E402
import gen_power  # noqa: E402

COMMAND = (
    ".tools/bin/uv run --isolated --no-project --python 3.11 --with gbstats==0.8.0 --with numpy==1.26.4"
    " --with scipy==1.17.1 --with statsmodels==0.15.0 --with spotify-confidence==4.1.0 --with pandas==1.5.3"
    " python tests/abtest/reference/generate.py"
)
LIBRARIES = ("gbstats", "numpy", "pandas", "scipy", "spotify-confidence", "statsmodels")


def main() -> None:
    cases = gen_frequentist.cases() + gen_gbstats.cases() + gen_power.cases()
    ids = [c["id"] for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SystemExit(f"duplicate case ids: {dupes}")
    out = {
        "generated_by": COMMAND,
        "versions": {lib: importlib.metadata.version(lib) for lib in LIBRARIES},
        "python": ".".join(map(str, sys.version_info[:2])),
        "cases": cases,
    }
    text = json.dumps(out, sort_keys=True, indent=1)
    # one line per list of numbers / booleans (the data arrays), to keep the file small and readable
    text = re.sub(
        r"\[\n([^\[\]{}\"]*)\n *\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text
    )
    text += "\n"
    (HERE / "vectors.json").write_text(text)
    print(f"wrote {len(cases)} cases, {len(text)} bytes")


if __name__ == "__main__":
    main()
